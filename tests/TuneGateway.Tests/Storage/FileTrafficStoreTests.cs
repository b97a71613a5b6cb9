using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>Embedded-store specifics: crash recovery, segment files, the directory lock and DI.</summary>
public sealed class FileTrafficStoreTests : IDisposable
{
    private readonly TempDirectory _directory = new();
    private readonly ManualTimeProvider _clock = new(Entries.T0.AddMinutes(5));

    public void Dispose() => _directory.Dispose();

    [Fact]
    public async Task ATornLastLineIsCutOffOnOpenAndAppendsContinue()
    {
        var entries = Enumerable.Range(0, 3).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        using (var store = Open())
        {
            await store.AppendAsync(entries);
        }

        var segment = Segments("alpha").Single();
        await File.AppendAllTextAsync(segment, "{\"position\":\"17419536");
        var indexPath = Path.ChangeExtension(segment, ".idx");
        await File.AppendAllTextAsync(indexPath, "17419536");

        using var reopened = Open();
        var late = Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(9));
        await reopened.AppendAsync([late]);

        var page = await reopened.QueryAsync(new TrafficQuery { Adapter = "alpha" });
        Assert.Equal([.. entries.Select(e => e.Id), late.Id], page.Items.Select(r => r.Entry.Id));
        Assert.Equal(late, (await reopened.GetAsync(late.Id))!.Entry);
    }

    [Fact]
    public async Task AMissingIndexIsRebuiltFromItsSegment()
    {
        var entries = Enumerable.Range(0, 5).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        using (var store = Open())
        {
            await store.AppendAsync(entries);
        }

        File.Delete(Path.ChangeExtension(Segments("alpha").Single(), ".idx"));

        using var reopened = Open();
        Assert.Equal(entries[3], (await reopened.GetAsync(entries[3].Id))!.Entry);
        Assert.True(File.Exists(Path.ChangeExtension(Segments("alpha").Single(), ".idx")));
    }

    [Fact]
    public async Task SegmentsRollAndFullyTrimmedOnesAreDeleted()
    {
        using var store = Open(o =>
        {
            o.SegmentMaxBytes = 4 * 1024;
            o.MaxEntriesPerStream = 5;
        });
        var entries = Enumerable.Range(0, 60).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        foreach (var chunk in entries.Chunk(3))
        {
            await store.AppendAsync(chunk);
        }

        var segments = Segments("alpha");
        Assert.InRange(segments.Length, 1, 4);
        var remaining = await store.QueryAsync(new TrafficQuery { Adapter = "alpha" });
        Assert.Equal(entries.TakeLast(5).Select(e => e.Id), remaining.Items.Select(r => r.Entry.Id));
        var onDisk = string.Concat(segments.Select(File.ReadAllText));
        Assert.DoesNotContain(entries[0].Id, onDisk, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TrimmedEntriesStayTrimmedAfterARestart()
    {
        var entries = Enumerable.Range(0, 10).Select(i => Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        using (var store = Open(o => o.MaxEntriesPerStream = 4))
        {
            await store.AppendAsync(entries);
            await store.TrimAsync();
        }

        using var reopened = Open(o => o.MaxEntriesPerStream = 100);

        var page = await reopened.QueryAsync(new TrafficQuery { Adapter = "alpha" });
        Assert.Equal(entries.TakeLast(4).Select(e => e.Id), page.Items.Select(r => r.Entry.Id));
    }

    [Fact]
    public async Task ASecondStoreOnTheSameDirectoryIsRefused()
    {
        using var first = Open();
        await first.ListAdaptersAsync();

        using var second = Open();

        var error = await Assert.ThrowsAsync<IOException>(() => second.ListAdaptersAsync());
        Assert.Contains("in use", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AdapterNamesThatAreNotFileNamesWork()
    {
        using (var store = Open())
        {
            await store.AppendAsync([Entries.Minimal(Entries.NewId(), "../../etc/pässwd ✓"), Entries.Minimal(Entries.NewId(), "a/b")]);
        }

        using var reopened = Open();
        Assert.Equal(["../../etc/pässwd ✓", "a/b"], (await reopened.ListAdaptersAsync()).Select(s => s.Adapter));
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(_directory.Path, "traffic", "logs")).Length);
    }

    [Fact]
    public async Task FeedbackSurvivesCompactionAndRestart()
    {
        var entry = Entries.Full(Entries.NewId(), "alpha");
        string cursor;
        using (var store = Open())
        {
            await store.AppendAsync([entry]);
            for (var i = 0; i < 1100; i++)
            {
                await store.UpsertFeedbackAsync(new FeedbackInput(entry.Id, i % 2 == 0 ? 1 : -1, RatingScale.Thumbs, i % 2 == 0 ? 1 : -1, $"fix {i}", null, null));
            }

            cursor = (await store.CountFeedbackSinceAsync("alpha", null)).Cursor;
            await store.TrimAsync();
        }

        Assert.Single(await File.ReadAllLinesAsync(Path.Combine(_directory.Path, "traffic", "feedback.jsonl")));
        using var reopened = Open();
        Assert.Equal("fix 1099", (await reopened.GetAsync(entry.Id))!.Feedback!.Correction);
        Assert.Equal(0, (await reopened.CountFeedbackSinceAsync("alpha", cursor)).Count);
        await reopened.UpsertFeedbackAsync(new FeedbackInput(entry.Id, 1, RatingScale.Thumbs, 1, null, null, null));
        Assert.Equal(1, (await reopened.CountFeedbackSinceAsync("alpha", cursor)).Count);
    }

    [Fact]
    public async Task AddTrafficLogWithoutRedisUsesTheEmbeddedStore()
    {
        var services = new ServiceCollection()
            .AddLogging()
            .AddTrafficLog(o => o.DataDirectory = _directory.Path);
        await using var provider = services.BuildServiceProvider();

        var store = provider.GetRequiredService<ITrafficStore>();
        var hosted = provider.GetServices<IHostedService>().Single();
        Assert.IsType<FileTrafficStore>(store);
        Assert.Same(store, provider.GetRequiredService<ITrafficReader>());
        Assert.Same(provider.GetRequiredService<ITrafficLog>(), hosted);
        Assert.StartsWith(_directory.Path, ((FileTrafficStore)store).RootDirectory, StringComparison.Ordinal);

        await hosted.StartAsync(CancellationToken.None);
        var entry = Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow);
        provider.GetRequiredService<ITrafficLog>().Record(entry);
        var result = await provider.GetRequiredService<IFeedbackService>().SubmitAsync(new FeedbackRequest(entry.Id, -1), "key-1");
        await hosted.StopAsync(CancellationToken.None);

        Assert.Equal(FeedbackStatus.Created, result.Status);
        Assert.True(Directory.Exists(Path.Combine(_directory.Path, "traffic-spill")));
    }

    [Fact]
    public void InvalidOptionsAreReportedWhenResolved()
    {
        var services = new ServiceCollection().AddTrafficLog(o =>
        {
            o.DataDirectory = _directory.Path;
            o.SampleRate = 1.5;
            o.Redaction.Rules.Add(new RedactionRule { Pattern = "([" });
        });
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<TrafficLogOptions>>().Value);

        Assert.Contains(error.Failures, f => f.Contains("SampleRate", StringComparison.Ordinal));
        Assert.Contains(error.Failures, f => f.Contains("([", StringComparison.Ordinal));
    }

    private FileTrafficStore Open(Action<TrafficLogOptions>? configure = null)
    {
        var options = new TrafficLogOptions { DataDirectory = _directory.Path };
        configure?.Invoke(options);
        return new FileTrafficStore(Options.Create(options), _clock);
    }

    private string[] Segments(string adapter)
    {
        var logs = Path.Combine(_directory.Path, "traffic", "logs");
        var directory = Directory.GetDirectories(logs).Single(d => File.ReadAllText(Path.Combine(d, "name")) == adapter);
        return Directory.GetFiles(directory, "*.jsonl").Order(StringComparer.Ordinal).ToArray();
    }
}
