using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using TuneGateway.Storage;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Storage;

/// <summary>
/// The writer against a real Redis that is stopped, restarted and paused while traffic keeps coming.
/// </summary>
public sealed class TrafficLogRedisResilienceTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const string Adapter = "load";
    private readonly TempDirectory _directory = new();
    private readonly string _prefix = "resilience-" + Guid.NewGuid().ToString("N");
    private readonly List<TrafficLogWriter> _writers = [];
    private IConnectionMultiplexer? _connection;

    public async Task InitializeAsync()
    {
        await redis.StartAsync();
        _connection = await RedisConnection.ConnectAsync(redis.ConnectionString);
    }

    public async Task DisposeAsync()
    {
        foreach (var writer in _writers)
        {
            writer.Dispose();
        }

        await redis.StartAsync();
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }

        _directory.Dispose();
    }

    [Fact]
    public async Task RedisStoppedAndRestartedUnderLoadLosesNothingBelowTheBound()
    {
        var writer = await StartWriterAsync(o =>
        {
            o.QueueCapacity = 100_000;
            o.BatchSize = 64;
            o.WriteTimeout = TimeSpan.FromSeconds(1);
        });
        var accepted = new ConcurrentQueue<string>();
        var refused = 0;
        using var stop = new CancellationTokenSource();
        var producer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                for (var i = 0; i < 5; i++)
                {
                    var entry = Entries.Full(Entries.NewId(), Adapter, DateTimeOffset.UtcNow);
                    if (writer.Record(entry) == TrafficLogDecision.Accepted)
                    {
                        accepted.Enqueue(entry.Id);
                    }
                    else
                    {
                        Interlocked.Increment(ref refused);
                    }
                }

                await Task.Delay(1);
            }
        });

        await Eventually.TrueAsync(() => writer.GetStatistics().Written > 200, "entries are written before the outage");
        await redis.StopAsync(save: true);
        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled > 500, "entries are spilled while Redis is down");
        await redis.StartAsync();
        await Eventually.TrueAsync(() => writer.GetStatistics().Replayed > 0, "the spill is replayed once Redis is back");
        var writtenAfterRestart = writer.GetStatistics().Written;
        await Eventually.TrueAsync(() => writer.GetStatistics().Written > writtenAfterRestart + 100, "new entries are written directly again");
        await stop.CancelAsync();
        await producer;
        await Eventually.TrueAsync(() => writer.GetStatistics().Backlog == 0, "the backlog drains");

        var statistics = writer.GetStatistics();
        output.WriteLine(statistics.ToString());
        Assert.Equal(0, refused);
        Assert.Equal(0, statistics.Dropped);
        Assert.Equal(statistics.Spilled, statistics.Replayed);
        Assert.Equal(accepted.Count, statistics.Written + statistics.Replayed);
        var stored = await ReadStreamIdsAsync();
        Assert.Equal(stored.Count, stored.Distinct().Count());
        Assert.Equal(accepted.Order(StringComparer.Ordinal), stored.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task APausedRedisNeitherBlocksRecordNorLosesEntries()
    {
        var writer = await StartWriterAsync(o =>
        {
            o.WriteTimeout = TimeSpan.FromMilliseconds(300);
            o.BatchSize = 50;
        });
        var before = Enumerable.Range(0, 50).Select(_ => Entries.Full(Entries.NewId(), Adapter, DateTimeOffset.UtcNow)).ToList();
        before.ForEach(entry => writer.Record(entry));
        await Eventually.TrueAsync(() => writer.GetStatistics().Written == 50, "the first entries are written");

        Assert.Equal("+OK", await redis.CommandAsync("CLIENT", "PAUSE", "5000", "ALL"));
        var during = Enumerable.Range(0, 1000).Select(_ => Entries.Full(Entries.NewId(), Adapter, DateTimeOffset.UtcNow)).ToList();
        var decisions = during.Select(writer.Record).ToList();

        Assert.All(decisions, decision => Assert.Equal(TrafficLogDecision.Accepted, decision));
        await Eventually.TrueAsync(() => writer.GetStatistics().Spilled > 0, "batches that Redis does not answer in time are spilled");
        await Eventually.TrueAsync(() => writer.GetStatistics().Backlog == 0, "everything is written once Redis answers again");
        output.WriteLine(writer.GetStatistics().ToString());
        var stored = await ReadStreamIdsAsync();
        Assert.Equal(stored.Count, stored.Distinct().Count());
        Assert.Equal(before.Concat(during).Select(e => e.Id).Order(StringComparer.Ordinal), stored.Order(StringComparer.Ordinal));
        Assert.Equal(0, writer.GetStatistics().Dropped);
    }

    [Fact]
    public async Task BeyondTheBoundEntriesAreDroppedAndEveryOneIsAccountedFor()
    {
        var writer = await StartWriterAsync(o =>
        {
            o.QueueCapacity = 64;
            o.BatchSize = 16;
            o.SpillMaxBytes = 32 * 1024;
        });
        await redis.StopAsync(save: true);
        await Eventually.TrueAsync(() => !_connection!.IsConnected, "the client notices that Redis is down");

        var entries = Enumerable.Range(0, 3000).Select(_ => Entries.Full(Entries.NewId(), Adapter, DateTimeOffset.UtcNow)).ToList();
        var decisions = entries.Select(writer.Record).ToList();
        await Eventually.TrueAsync(() => writer.GetStatistics().QueuedInMemory == 0, "the queue is drained into the spill");
        var outage = writer.GetStatistics();
        Assert.True(outage.Dropped > 0, "the bound was exceeded, so entries must have been dropped");
        Assert.True(outage.Spilled > 0);

        await redis.StartAsync();
        await Eventually.TrueAsync(() => writer.GetStatistics().Backlog == 0, "the spill is replayed");

        var statistics = writer.GetStatistics();
        output.WriteLine(statistics.ToString());
        var accepted = entries.Where((_, i) => decisions[i] == TrafficLogDecision.Accepted).Select(e => e.Id).ToHashSet();
        var stored = await ReadStreamIdsAsync();
        Assert.Equal(decisions.Count(d => d == TrafficLogDecision.Dropped), statistics.DroppedQueueFull);
        Assert.Equal(accepted.Count, stored.Count + statistics.DroppedSpillFull + statistics.DroppedOther);
        Assert.Equal(entries.Count, stored.Count + statistics.Dropped);
        Assert.All(stored, id => Assert.Contains(id, accepted));
        Assert.Equal(stored.Count, stored.Distinct().Count());
    }

    private async Task<TrafficLogWriter> StartWriterAsync(Action<TrafficLogOptions> configure)
    {
        var options = new TrafficLogOptions
        {
            KeyPrefix = _prefix,
            SpillDirectory = Path.Combine(_directory.Path, "spill"),
        };
        configure(options);
        var wrapped = Options.Create(options);
        var writer = new TrafficLogWriter(new RedisTrafficStore(_connection!, wrapped), wrapped, new TrafficPrivacyPolicy(wrapped));
        _writers.Add(writer);
        await writer.StartAsync(CancellationToken.None);
        return writer;
    }

    private async Task<List<string>> ReadStreamIdsAsync()
    {
        var db = _connection!.GetDatabase();
        var ids = new List<string>();
        RedisValue from = "-";
        while (true)
        {
            var page = await db.StreamRangeAsync($"{_prefix}:traffic:{Adapter}", from, "+", 1000);
            ids.AddRange(page.Select(entry => (string)entry["id"]!));
            if (page.Length < 1000)
            {
                return ids;
            }

            from = "(" + page[^1].Id;
        }
    }
}
