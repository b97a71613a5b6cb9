using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>Unit tests of the writer against a fake store that can be switched off, made to fail or to hang.</summary>
public sealed class TrafficLogWriterTests : IDisposable
{
    private readonly TempDirectory _directory = new();
    private readonly List<TrafficLogWriter> _writers = [];

    public void Dispose()
    {
        foreach (var writer in _writers)
        {
            writer.Dispose();
        }

        _directory.Dispose();
    }

    [Fact]
    public async Task RecordedEntriesReachTheStoreRedacted()
    {
        var store = new FakeTrafficStore();
        var writer = await StartAsync(store);
        var entry = Entries.Full(Entries.NewId()) with { Prompt = "Mail jane.doe@example.com", User = "jane.doe@example.com" };

        Assert.Equal(TrafficLogDecision.Accepted, writer.Record(entry));

        await Eventually.TrueAsync(() => store.Entries.Count == 1, "the entry is written");
        Assert.Equal(entry with { Prompt = "Mail [EMAIL]", User = "[EMAIL]" }, store.Entries[0]);
        await Eventually.TrueAsync(() => !writer.IsPending(entry.Id), "the entry is no longer pending");
        var statistics = writer.GetStatistics();
        Assert.Equal(1, statistics.Enqueued);
        Assert.Equal(1, statistics.Written);
        Assert.Equal(0, statistics.Backlog);
    }

    [Fact]
    public async Task RecordNeverWaitsForAHangingStoreAndDropsOnlyWhenTheQueueIsFull()
    {
        var store = new FakeTrafficStore();
        store.Hold();
        var writer = await StartAsync(store, o =>
        {
            o.QueueCapacity = 100;
            o.BatchSize = 10;
            o.WriteTimeout = TimeSpan.FromMinutes(5);
        });

        // Record is synchronous: if it waited for the held store, this loop would never finish.
        var decisions = Enumerable.Range(0, 300).Select(_ => writer.Record(Entries.Minimal(Entries.NewId()))).ToList();

        var accepted = decisions.Count(d => d == TrafficLogDecision.Accepted);
        var dropped = decisions.Count(d => d == TrafficLogDecision.Dropped);
        Assert.Equal(300, accepted + dropped);
        Assert.InRange(accepted, 100, 110);
        Assert.Equal(dropped, writer.GetStatistics().DroppedQueueFull);

        store.Release();
        await Eventually.TrueAsync(() => writer.GetStatistics().Written == accepted, "every accepted entry is written");
        Assert.Equal(accepted, store.Entries.Count);
    }

    [Fact]
    public async Task AnUnavailableStoreIsSpilledToAndReplayedWhenItReturns()
    {
        var store = new FakeTrafficStore { Available = false };
        var writer = await StartAsync(store, o => o.BatchSize = 16);
        var ids = Enumerable.Range(0, 500).Select(_ => Entries.NewId()).ToList();
        foreach (var id in ids)
        {
            Assert.Equal(TrafficLogDecision.Accepted, writer.Record(Entries.Full(id)));
        }

        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled == 500, "everything is spilled");
        Assert.Empty(store.Entries);
        Assert.Equal(500, writer.GetStatistics().QueuedInSpill);
        Assert.True(writer.IsPending(ids[0]));

        store.Available = true;

        await Eventually.TrueAsync(() => writer.GetStatistics().Replayed == 500, "everything is replayed");
        Assert.Equal(ids, store.Entries.Select(e => e.Id));
        var statistics = writer.GetStatistics();
        Assert.Equal(0, statistics.Dropped);
        Assert.Equal(0, statistics.Backlog);
        Assert.False(writer.IsPending(ids[0]));
        Assert.Empty(Directory.GetFiles(Path.Combine(_directory.Path, "spill"), "*.jsonl"));
    }

    [Fact]
    public async Task AFailingStoreIsRetriedAndNothingIsLost()
    {
        var store = new FakeTrafficStore { Fail = true };
        var writer = await StartAsync(store, o => o.BatchSize = 8);
        var ids = Enumerable.Range(0, 100).Select(_ => Entries.NewId()).ToList();
        foreach (var id in ids.Take(50))
        {
            writer.Record(Entries.Minimal(id));
        }

        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled == 50, "the failed batches are spilled");
        await Eventually.TrueAsync(() => store.AppendCalls > 2, "the store is probed again");
        store.Fail = false;
        foreach (var id in ids.Skip(50))
        {
            writer.Record(Entries.Minimal(id));
        }

        await Eventually.TrueAsync(() => store.Entries.Count == 100, "every entry is stored");
        Assert.Equal(ids.Order(), store.Entries.Select(e => e.Id).Order());
        Assert.Equal(0, writer.GetStatistics().Dropped);
    }

    [Fact]
    public async Task ASlowStoreTimesOutAndTheBatchIsSpilledThenStoredOnce()
    {
        var store = new FakeTrafficStore();
        store.Hold();
        var writer = await StartAsync(store, o => o.WriteTimeout = TimeSpan.FromMilliseconds(200));
        var ids = Enumerable.Range(0, 50).Select(_ => Entries.NewId()).ToList();
        foreach (var id in ids)
        {
            writer.Record(Entries.Minimal(id));
        }

        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled > 0, "the timed-out batch is spilled");
        store.Release();

        await Eventually.TrueAsync(() => writer.GetStatistics().Backlog == 0 && store.Entries.Count == 50, "every entry is stored");
        Assert.Equal(ids.Order(), store.Entries.Select(e => e.Id).Order());
    }

    [Fact]
    public async Task BeyondTheSpillBoundEntriesAreDroppedAndCounted()
    {
        var store = new FakeTrafficStore { Available = false };
        var writer = await StartAsync(store, o =>
        {
            o.SpillMaxBytes = 20 * 1024;
            o.BatchSize = 10;
        });
        var ids = Enumerable.Range(0, 200).Select(_ => Entries.NewId()).ToList();
        foreach (var id in ids)
        {
            Assert.Equal(TrafficLogDecision.Accepted, writer.Record(Entries.Full(id)));
        }

        await Eventually.TrueAsync(() => writer.GetStatistics() is var s && s.Spilled + s.DroppedSpillFull == 200, "every entry is spilled or dropped");
        var statistics = writer.GetStatistics();
        Assert.True(statistics.Spilled > 0);
        Assert.True(statistics.DroppedSpillFull > 0);
        Assert.True(Directory.GetFiles(Path.Combine(_directory.Path, "spill")).Sum(f => new FileInfo(f).Length) <= 20 * 1024);

        store.Available = true;
        await Eventually.TrueAsync(() => writer.GetStatistics().Backlog == 0, "the spill is replayed");
        Assert.Equal(statistics.Spilled, store.Entries.Count);
        Assert.Equal(200, store.Entries.Count + writer.GetStatistics().Dropped);
        Assert.All(store.Entries, e => Assert.Contains(e.Id, ids));
    }

    [Fact]
    public async Task TheSpillOutlivesTheWriterAndIsReplayedByTheNextOne()
    {
        var down = new FakeTrafficStore { Available = false };
        var first = await StartAsync(down);
        var ids = Enumerable.Range(0, 120).Select(_ => Entries.NewId()).ToList();
        ids.ForEach(id => first.Record(Entries.Full(id)));
        await Eventually.TrueAsync(() => first.GetStatistics().Spilled == 120, "everything is spilled");
        await first.StopAsync(CancellationToken.None);
        first.Dispose();

        var up = new FakeTrafficStore();
        var second = await StartAsync(up);

        await Eventually.TrueAsync(() => second.GetStatistics().Replayed == 120, "the previous run's spill is replayed");
        Assert.Equal(ids, up.Entries.Select(e => e.Id));
    }

    [Fact]
    public async Task ATornSpillLineFromACrashIsCutOffAndTheRestReplayed()
    {
        var down = new FakeTrafficStore { Available = false };
        var first = await StartAsync(down);
        var ids = Enumerable.Range(0, 10).Select(_ => Entries.NewId()).ToList();
        ids.ForEach(id => first.Record(Entries.Full(id)));
        await Eventually.TrueAsync(() => first.GetStatistics().Spilled == 10, "everything is spilled");
        await first.StopAsync(CancellationToken.None);
        first.Dispose();
        var segment = Directory.GetFiles(Path.Combine(_directory.Path, "spill"), "*.jsonl").Single();
        await File.AppendAllTextAsync(segment, "{\"id\":\"chatcmpl-torn\",\"timest");

        var up = new FakeTrafficStore();
        var second = await StartAsync(up);

        await Eventually.TrueAsync(() => second.GetStatistics().Replayed == 10, "the intact entries are replayed");
        Assert.Equal(ids, up.Entries.Select(e => e.Id));
        Assert.Equal(0, second.GetStatistics().DroppedOther);
    }

    [Fact]
    public async Task AnIdleWriterWithAnUnavailableStoreDoesNotSpin()
    {
        var store = new FakeTrafficStore { Available = false };
        var writer = await StartAsync(store, o => o.TrimInterval = TimeSpan.FromMilliseconds(20));
        writer.Record(Entries.Minimal(Entries.NewId()));
        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled == 1, "the entry is spilled");
        var checks = Interlocked.Read(ref store.AvailabilityChecks);

        // Half a second of idling: a loop that waits checks the store a few dozen times, a spinning one millions.
        await Task.Delay(TimeSpan.FromMilliseconds(500));

        Assert.InRange(Interlocked.Read(ref store.AvailabilityChecks) - checks, 1, 10_000);
    }

    [Fact]
    public async Task ASecondWriterOnTheSameSpillDirectoryDropsInsteadOfCorruptingIt()
    {
        var first = await StartAsync(new FakeTrafficStore { Available = false });
        first.Record(Entries.Full(Entries.NewId()));
        await Eventually.TrueAsync(() => first.GetStatistics().Spilled == 1, "the first writer spills");

        var second = await StartAsync(new FakeTrafficStore { Available = false });
        second.Record(Entries.Full(Entries.NewId()));

        await Eventually.TrueAsync(() => second.GetStatistics().DroppedSpillFull == 1, "the second writer drops");
        Assert.Equal(0, second.GetStatistics().Spilled);
        Assert.Equal(1, first.GetStatistics().QueuedInSpill);
    }

    [Fact]
    public async Task StoppingDrainsTheQueue()
    {
        var store = new FakeTrafficStore();
        var writer = await StartAsync(store);
        var ids = Enumerable.Range(0, 1000).Select(_ => Entries.NewId()).ToList();
        ids.ForEach(id => writer.Record(Entries.Minimal(id)));

        await writer.StopAsync(CancellationToken.None);

        Assert.Equal(1000, store.Entries.Count);
        Assert.Equal(TrafficLogDecision.Dropped, writer.Record(Entries.Minimal(Entries.NewId())));
        Assert.Equal(1, writer.GetStatistics().DroppedOther);
    }

    [Fact]
    public async Task StoppingBeforeTheLoopEverRanStillDrainsTheQueue()
    {
        var store = new FakeTrafficStore();
        var options = Options.Create(new TrafficLogOptions { SpillDirectory = Path.Combine(_directory.Path, "spill") });
        using var writer = new TrafficLogWriter(store, options, new TrafficPrivacyPolicy(options));
        var ids = Enumerable.Range(0, 300).Select(_ => Entries.NewId()).ToList();
        ids.ForEach(id => writer.Record(Entries.Minimal(id)));

        await writer.StopAsync(CancellationToken.None);

        Assert.Equal(ids, store.Entries.Select(e => e.Id));
    }

    [Fact]
    public async Task OptedOutKeysAndInvalidEntriesAreNotLogged()
    {
        var store = new FakeTrafficStore();
        var writer = await StartAsync(store, o => o.OptOutApiKeyIds = ["key-private"]);
        var kept = Entries.Full(Entries.NewId()) with { ApiKeyId = "key-public" };

        Assert.Equal(TrafficLogDecision.OptedOut, writer.Record(Entries.Full(Entries.NewId()) with { ApiKeyId = "key-private" }));
        Assert.Equal(TrafficLogDecision.Rejected, writer.Record(Entries.Minimal("bad\nid")));
        Assert.Equal(TrafficLogDecision.Rejected, writer.Record(Entries.Minimal(Entries.NewId()) with { LatencyMs = double.NaN }));
        Assert.Equal(TrafficLogDecision.Rejected, writer.Record(Entries.Minimal(Entries.NewId()) with { MeanLogprob = double.NegativeInfinity }));
        Assert.Equal(TrafficLogDecision.Rejected, writer.Record(null!));
        Assert.Equal(TrafficLogDecision.Accepted, writer.Record(kept));

        await Eventually.TrueAsync(() => writer.GetStatistics().Written == 1, "the kept entry is written");
        Assert.Equal([kept.Id], store.Entries.Select(e => e.Id));
        var statistics = writer.GetStatistics();
        Assert.Equal(1, statistics.OptedOut);
        Assert.Equal(4, statistics.Rejected);
    }

    [Fact]
    public async Task SamplingFollowsTheDeterministicSamplerForEveryId()
    {
        var store = new FakeTrafficStore();
        var writer = await StartAsync(store, o => o.SampleRate = 0.3);
        var ids = Enumerable.Range(0, 2000).Select(_ => Entries.NewId()).ToList();

        var decisions = ids.Select(id => (id, decision: writer.Record(Entries.Minimal(id)))).ToList();

        foreach (var (id, decision) in decisions)
        {
            Assert.Equal(TrafficSampler.IsSampled(id, 0.3) ? TrafficLogDecision.Accepted : TrafficLogDecision.SampledOut, decision);
        }

        var sampled = decisions.Count(d => d.decision == TrafficLogDecision.Accepted);
        Assert.InRange(sampled, 450, 750);
        await Eventually.TrueAsync(() => store.Entries.Count == sampled, "the sampled entries are written");
        Assert.Equal(2000 - sampled, writer.GetStatistics().SampledOut);
    }

    [Fact]
    public async Task NothingUnredactedReachesTheSpillFile()
    {
        var store = new FakeTrafficStore { Available = false };
        var writer = await StartAsync(store);
        writer.Record(Entries.Full(Entries.NewId()) with
        {
            Prompt = "card 4111 1111 1111 1111, phone +1 415 555 2671",
            Completion = "write to jane.doe@example.com",
        });

        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled == 1, "the entry is spilled");

        var spilled = await File.ReadAllTextAsync(Directory.GetFiles(Path.Combine(_directory.Path, "spill"), "*.jsonl").Single());
        Assert.DoesNotContain("4111", spilled, StringComparison.Ordinal);
        Assert.DoesNotContain("2671", spilled, StringComparison.Ordinal);
        Assert.DoesNotContain("jane.doe", spilled, StringComparison.Ordinal);
        Assert.Contains("[CARD]", spilled, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LoneSurrogatesAreReplacedSoThatEntriesSerialise()
    {
        var store = new FakeTrafficStore { Available = false };
        var writer = await StartAsync(store);
        var id = Entries.NewId();
        writer.Record(Entries.Full(id) with { Prompt = "broken \uD800 text", Completion = "ok 🚀" });
        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled == 1, "the entry is spilled");

        store.Available = true;

        await Eventually.TrueAsync(() => store.Entries.Count == 1, "the entry is replayed");
        Assert.Equal("broken \uFFFD text", store.Entries[0].Prompt);
        Assert.Equal("ok 🚀", store.Entries[0].Completion);
    }

    [Fact]
    public async Task CountersArePublishedOnTheStorageMeter()
    {
        var store = new FakeTrafficStore { Available = false };
        var writer = await StartAsync(store, o => o.OptOutApiKeyIds = ["key-private"]);
        for (var i = 0; i < 5; i++)
        {
            writer.Record(Entries.Full(Entries.NewId()));
        }

        writer.Record(Entries.Full(Entries.NewId()) with { ApiKeyId = "key-private" });
        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled == 5, "the entries are spilled");

        var measurements = Measure(writer);
        Assert.Equal("TuneGateway.Storage", writer.Meter.Name);
        Assert.Equal(5, measurements[("tunegw.traffic.enqueued", "")]);
        Assert.Equal(5, measurements[("tunegw.traffic.spilled", "")]);
        Assert.Equal(0, measurements[("tunegw.traffic.written", "")]);
        Assert.Equal(5, measurements[("tunegw.traffic.backlog", "spill")]);
        Assert.Equal(1, measurements[("tunegw.traffic.skipped", "opted_out")]);
        Assert.Equal(0, measurements[("tunegw.traffic.dropped", "spill_full")]);

        store.Available = true;
        await Eventually.TrueAsync(() => writer.GetStatistics().Replayed == 5, "the entries are replayed");
        measurements = Measure(writer);
        Assert.Equal(5, measurements[("tunegw.traffic.replayed", "")]);
        Assert.Equal(0, measurements[("tunegw.traffic.backlog", "spill")]);
    }

    private static Dictionary<(string Instrument, string Tag), long> Measure(TrafficLogWriter writer)
    {
        var measurements = new Dictionary<(string, string), long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, writer.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var tag = tags.Length > 0 ? tags[0].Value?.ToString() ?? "" : "";
            measurements[(instrument.Name, tag)] = value;
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return measurements;
    }

    private async Task<TrafficLogWriter> StartAsync(ITrafficStore store, Action<TrafficLogOptions>? configure = null)
    {
        var options = new TrafficLogOptions
        {
            DataDirectory = _directory.Path,
            SpillDirectory = Path.Combine(_directory.Path, "spill"),
        };
        configure?.Invoke(options);
        var wrapped = Options.Create(options);
        var writer = new TrafficLogWriter(store, wrapped, new TrafficPrivacyPolicy(wrapped));
        _writers.Add(writer);
        await writer.StartAsync(CancellationToken.None);
        return writer;
    }
}
