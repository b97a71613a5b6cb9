using Microsoft.Extensions.Options;
using StackExchange.Redis;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>
/// The contract every <see cref="ITrafficStore"/> satisfies; run against Redis and the embedded store.
/// </summary>
public abstract class TrafficStoreContractTests : IAsyncLifetime
{
    private readonly List<ITrafficStore> _stores = [];

    /// <summary>The clock the stores use for trimming and feedback times.</summary>
    private protected ManualTimeProvider Clock { get; } = new(Entries.T0.AddMinutes(5));

    /// <summary>How far past <see cref="TrafficLogOptions.MaxEntriesPerStream"/> a log may grow between exact trims.</summary>
    protected abstract int ApproximateTrimSlack { get; }

    /// <summary>Options pointing at storage of this test only.</summary>
    protected abstract TrafficLogOptions NewOptions();

    /// <summary>Creates a store over the storage <paramref name="options"/> point at.</summary>
    private protected abstract ITrafficStore CreateStore(TrafficLogOptions options, TimeProvider time);

    /// <summary>Releases a store (before it is reopened, or at the end).</summary>
    protected virtual void Release(ITrafficStore store) => (store as IDisposable)?.Dispose();

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync()
    {
        foreach (var store in _stores)
        {
            Release(store);
        }

        return Task.CompletedTask;
    }

    [Fact]
    public async Task AppendedEntriesRoundTripWithEveryField()
    {
        var store = Open(NewOptions());
        var full = Entries.Full(Entries.NewId(), timestamp: new DateTimeOffset(2025, 3, 14, 13, 30, 15, TimeSpan.FromHours(2)).AddTicks(1234567));
        var minimal = Entries.Minimal(Entries.NewId(), adapter: "support-bot", timestamp: Entries.T0.AddSeconds(1));

        Assert.Equal(2, await store.AppendAsync([full, minimal]));

        var fullRecord = await store.GetAsync(full.Id);
        Assert.NotNull(fullRecord);
        Assert.Equal(full, fullRecord.Entry);
        Assert.Equal(full.Timestamp.Offset, fullRecord.Entry.Timestamp.Offset);
        Assert.Equal(full.Timestamp.Ticks, fullRecord.Entry.Timestamp.Ticks);
        Assert.Null(fullRecord.Feedback);
        var minimalRecord = await store.GetAsync(minimal.Id);
        Assert.Equal(minimal, minimalRecord?.Entry);
    }

    [Fact]
    public async Task MeanLogprobRoundTripsExactlyAndIsOptional()
    {
        var store = Open(NewOptions());
        double[] values = [-1e-300, -0.1 - 0.2, -123.456789012345, 0.0, -double.Epsilon];
        var entries = values.Select((v, i) => Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i)) with { MeanLogprob = v }).ToList();
        var without = Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddSeconds(10));
        await store.AppendAsync([.. entries, without]);

        foreach (var entry in entries)
        {
            var stored = (await store.GetAsync(entry.Id))!.Entry.MeanLogprob;
            Assert.Equal(BitConverter.DoubleToInt64Bits(entry.MeanLogprob!.Value), BitConverter.DoubleToInt64Bits(stored!.Value));
        }

        Assert.Null((await store.GetAsync(without.Id))!.Entry.MeanLogprob);
        var page = await store.QueryAsync(new TrafficQuery { Adapter = "alpha" });
        Assert.Equal([.. values.Cast<double?>(), null], page.Items.Select(r => r.Entry.MeanLogprob));
        await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync([Entries.Minimal(Entries.NewId(), "alpha") with { MeanLogprob = double.NaN }]));
    }

    [Fact]
    public async Task UnknownIdsAreNotFound()
    {
        var store = Open(NewOptions());
        await store.AppendAsync([Entries.Full(Entries.NewId())]);

        Assert.Null(await store.GetAsync(Entries.NewId()));
    }

    [Fact]
    public async Task AppendingAnIdTwiceStoresItOnce()
    {
        var store = Open(NewOptions());
        var entry = Entries.Full(Entries.NewId());
        var other = Entries.Full(Entries.NewId(), timestamp: Entries.T0.AddSeconds(1));

        Assert.Equal(1, await store.AppendAsync([entry]));
        Assert.Equal(1, await store.AppendAsync([entry, other, other with { Prompt = "changed" }]));

        var page = await store.QueryAsync(new TrafficQuery { Adapter = entry.StreamName });
        Assert.Equal([entry.Id, other.Id], page.Items.Select(r => r.Entry.Id));
        Assert.Equal(other.Prompt, page.Items[1].Entry.Prompt);
    }

    [Fact]
    public async Task ABatchWithAnInvalidEntryIsRefusedWhole()
    {
        var store = Open(NewOptions());
        var valid = Entries.Full(Entries.NewId(), "alpha");

        await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync([valid, Entries.Minimal("tab\tid", "alpha")]));

        Assert.Null(await store.GetAsync(valid.Id));
        Assert.Empty((await store.QueryAsync(new TrafficQuery { Adapter = "alpha" })).Items);
    }

    [Fact]
    public async Task EachAdapterHasItsOwnLog()
    {
        var store = Open(NewOptions());
        var a = Enumerable.Range(0, 3).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        var b = Enumerable.Range(0, 2).Select(i => Entries.Full(Entries.NewId(), "beta", Entries.T0.AddSeconds(i))).ToList();
        var none = Entries.Full(Entries.NewId(), adapter: null);
        await store.AppendAsync([a[0], b[0], a[1], none, b[1], a[2]]);

        var adapters = await store.ListAdaptersAsync();
        Assert.Equal(
            [new AdapterTrafficSummary(TrafficEntry.NoAdapterStream, 1), new AdapterTrafficSummary("alpha", 3), new AdapterTrafficSummary("beta", 2)],
            adapters);
        Assert.Equal(a.Select(e => e.Id), (await store.QueryAsync(new TrafficQuery { Adapter = "alpha" })).Items.Select(r => r.Entry.Id));
        Assert.Equal(b.Select(e => e.Id), (await store.QueryAsync(new TrafficQuery { Adapter = "beta" })).Items.Select(r => r.Entry.Id));
        Assert.Equal([none.Id], (await store.QueryAsync(new TrafficQuery { Adapter = TrafficEntry.NoAdapterStream })).Items.Select(r => r.Entry.Id));
        Assert.Empty((await store.QueryAsync(new TrafficQuery { Adapter = "gamma" })).Items);
    }

    [Fact]
    public async Task PositionsFollowRequestTimeAndNeverGoBack()
    {
        var store = Open(NewOptions());
        var first = Entries.Minimal(Entries.NewId(), "alpha", Entries.T0);
        var second = Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddMilliseconds(5));
        var late = Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddMilliseconds(1));
        await store.AppendAsync([first, second]);
        await store.AppendAsync([late]);

        var ms = Entries.T0.ToUnixTimeMilliseconds();
        Assert.Equal(new LogPosition(ms, 0), (await store.GetAsync(first.Id))!.Position);
        Assert.Equal(new LogPosition(ms + 5, 0), (await store.GetAsync(second.Id))!.Position);
        Assert.Equal(new LogPosition(ms + 5, 1), (await store.GetAsync(late.Id))!.Position);
    }

    [Fact]
    public async Task QueriesPageThroughATimeWindowWithACursor()
    {
        var store = Open(NewOptions());
        var entries = Enumerable.Range(0, 25).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        foreach (var chunk in entries.Chunk(7))
        {
            await store.AppendAsync(chunk);
        }

        var query = new TrafficQuery { Adapter = "alpha", Since = Entries.T0.AddSeconds(3), Until = Entries.T0.AddSeconds(20), Limit = 5 };
        var seen = new List<string>();
        var pages = 0;
        for (string? cursor = null; ; pages++)
        {
            var page = await store.QueryAsync(query with { Cursor = cursor });
            Assert.True(page.Items.Count <= 5);
            seen.AddRange(page.Items.Select(r => r.Entry.Id));
            if (page.NextCursor is null)
            {
                break;
            }

            cursor = page.NextCursor;
        }

        Assert.Equal(entries.Skip(3).Take(17).Select(e => e.Id), seen);
        Assert.Equal(3, pages);
    }

    [Fact]
    public async Task AFullLastPageHasNoCursorWhenNothingFollows()
    {
        var store = Open(NewOptions());
        await store.AppendAsync(Enumerable.Range(0, 4).Select(i => Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList());

        var page = await store.QueryAsync(new TrafficQuery { Adapter = "alpha", Limit = 4 });

        Assert.Equal(4, page.Items.Count);
        Assert.Null(page.NextCursor);
    }

    [Fact]
    public async Task MalformedCursorsAreRejected()
    {
        var store = Open(NewOptions());

        await Assert.ThrowsAsync<FormatException>(() => store.QueryAsync(new TrafficQuery { Adapter = "alpha", Cursor = "not-a-cursor" }));
        await Assert.ThrowsAsync<FormatException>(() => store.CountFeedbackSinceAsync("alpha", "x1"));
    }

    [Fact]
    public async Task TrimmingKeepsTheNewestEntriesByCount()
    {
        var options = NewOptions();
        options.MaxEntriesPerStream = 10;
        var store = Open(options);
        var entries = Enumerable.Range(0, 40).Select(i => Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        var other = Entries.Minimal(Entries.NewId(), "beta", Entries.T0);
        foreach (var entry in entries)
        {
            await store.AppendAsync([entry]);
        }

        await store.AppendAsync([other]);

        var beforeTrim = (await store.ListAdaptersAsync()).Single(s => s.Adapter == "alpha").Count;
        Assert.InRange(beforeTrim, 10, 10 + ApproximateTrimSlack);

        await store.TrimAsync();

        var page = await store.QueryAsync(new TrafficQuery { Adapter = "alpha", Limit = 100 });
        Assert.Equal(entries.TakeLast(10).Select(e => e.Id), page.Items.Select(r => r.Entry.Id));
        Assert.Null(await store.GetAsync(entries[0].Id));
        Assert.Null(await store.GetAsync(entries[29].Id));
        Assert.NotNull(await store.GetAsync(entries[30].Id));
        Assert.NotNull(await store.GetAsync(other.Id));
    }

    [Fact]
    public async Task TrimmingRemovesEntriesOlderThanTheMaximumAge()
    {
        var options = NewOptions();
        options.MaxAge = TimeSpan.FromHours(1);
        options.MaxEntriesPerStream = null;
        var store = Open(options);
        var now = Clock.GetUtcNow();
        var entries = new[] { now.AddHours(-3), now.AddHours(-2), now.AddMinutes(-30), now.AddMinutes(-1) }
            .Select(time => Entries.Minimal(Entries.NewId(), "alpha", time))
            .ToList();
        await store.AppendAsync(entries);

        await store.TrimAsync();
        Assert.Equal(entries.TakeLast(2).Select(e => e.Id), (await store.QueryAsync(new TrafficQuery { Adapter = "alpha" })).Items.Select(r => r.Entry.Id));

        Clock.Advance(TimeSpan.FromMinutes(45));
        await store.TrimAsync();
        Assert.Equal([entries[3].Id], (await store.QueryAsync(new TrafficQuery { Adapter = "alpha" })).Items.Select(r => r.Entry.Id));
        Assert.Null(await store.GetAsync(entries[2].Id));
    }

    [Fact]
    public async Task FeedbackRoundTripsAndIsJoinedToItsRequest()
    {
        var store = Open(NewOptions());
        var rated = Entries.Full(Entries.NewId(), "alpha");
        var unrated = Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(1));
        await store.AppendAsync([rated, unrated]);

        var result = await store.UpsertFeedbackAsync(new FeedbackInput(rated.Id, 4, RatingScale.Stars, 0.5, "Better answer", "Too long", "key-1"));

        Assert.Equal(FeedbackStatus.Created, result.Status);
        var expected = new Feedback
        {
            Id = rated.Id,
            Adapter = "alpha",
            Rating = 4,
            Scale = RatingScale.Stars,
            Score = 0.5,
            Correction = "Better answer",
            Comment = "Too long",
            ApiKeyId = "key-1",
            CreatedAt = Clock.GetUtcNow(),
            UpdatedAt = Clock.GetUtcNow(),
        };
        Assert.Equal(expected, result.Feedback);
        Assert.Equal(expected, (await store.GetAsync(rated.Id))!.Feedback);
        var page = await store.QueryAsync(new TrafficQuery { Adapter = "alpha" });
        Assert.Equal(expected, page.Items[0].Feedback);
        Assert.Null(page.Items[1].Feedback);
        Assert.All((await store.QueryAsync(new TrafficQuery { Adapter = "alpha", IncludeFeedback = false })).Items, r => Assert.Null(r.Feedback));
    }

    [Fact]
    public async Task ASecondFeedbackUpdatesInsteadOfDuplicating()
    {
        var store = Open(NewOptions());
        var entry = Entries.Full(Entries.NewId(), "alpha");
        await store.AppendAsync([entry]);
        var created = await store.UpsertFeedbackAsync(new FeedbackInput(entry.Id, 1, RatingScale.Thumbs, 1, null, null, "key-1"));
        Clock.Advance(TimeSpan.FromMinutes(1));

        var updated = await store.UpsertFeedbackAsync(new FeedbackInput(entry.Id, -1, RatingScale.Thumbs, -1, "Say no", null, "key-1"));

        Assert.Equal(FeedbackStatus.Updated, updated.Status);
        Assert.Equal(created.Feedback!.CreatedAt, updated.Feedback!.CreatedAt);
        Assert.Equal(Clock.GetUtcNow(), updated.Feedback.UpdatedAt);
        var stored = (await store.GetAsync(entry.Id))!.Feedback!;
        Assert.Equal(-1, stored.Rating);
        Assert.Equal("Say no", stored.Correction);
        Assert.Equal(1, (await store.CountFeedbackSinceAsync("alpha", null)).Count);
    }

    [Fact]
    public async Task FeedbackForAnUnknownIdIsNotFound()
    {
        var store = Open(NewOptions());
        await store.AppendAsync([Entries.Full(Entries.NewId(), "alpha")]);

        var result = await store.UpsertFeedbackAsync(new FeedbackInput("chatcmpl-unknown", 1, RatingScale.Thumbs, 1, null, null, null));

        Assert.Equal(FeedbackStatus.NotFound, result.Status);
        Assert.Equal(404, result.StatusCode);
        Assert.Null(result.Feedback);
        Assert.Equal(0, (await store.CountFeedbackSinceAsync("alpha", null)).Count);
    }

    [Fact]
    public async Task FeedbackIsCountedSinceACursor()
    {
        var store = Open(NewOptions());
        var alpha = Enumerable.Range(0, 4).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        var beta = Entries.Full(Entries.NewId(), "beta");
        await store.AppendAsync([.. alpha, beta]);
        foreach (var entry in alpha.Take(3))
        {
            await store.UpsertFeedbackAsync(new FeedbackInput(entry.Id, 5, RatingScale.Stars, 1, null, null, null));
        }

        var first = await store.CountFeedbackSinceAsync("alpha", null);
        Assert.Equal(3, first.Count);
        Assert.Equal(0, (await store.CountFeedbackSinceAsync("alpha", first.Cursor)).Count);

        await store.UpsertFeedbackAsync(new FeedbackInput(alpha[3].Id, 1, RatingScale.Stars, -1, null, null, null));
        await store.UpsertFeedbackAsync(new FeedbackInput(alpha[0].Id, 2, RatingScale.Stars, -0.5, null, null, null));
        await store.UpsertFeedbackAsync(new FeedbackInput(alpha[0].Id, 3, RatingScale.Stars, 0, null, null, null));
        await store.UpsertFeedbackAsync(new FeedbackInput(beta.Id, 1, RatingScale.Thumbs, 1, null, null, null));

        var second = await store.CountFeedbackSinceAsync("alpha", first.Cursor);
        Assert.Equal(2, second.Count);
        Assert.Equal(0, (await store.CountFeedbackSinceAsync("alpha", second.Cursor)).Count);
        Assert.Equal(4, (await store.CountFeedbackSinceAsync("alpha", null)).Count);
        Assert.Equal(1, (await store.CountFeedbackSinceAsync("beta", first.Cursor)).Count);
        Assert.Equal(0, (await store.CountFeedbackSinceAsync("gamma", null)).Count);
    }

    [Fact]
    public async Task TrimmingARequestRemovesItsFeedback()
    {
        var options = NewOptions();
        options.MaxEntriesPerStream = 2;
        var store = Open(options);
        var entries = Enumerable.Range(0, 3).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        await store.AppendAsync(entries.Take(2).ToList());
        await store.UpsertFeedbackAsync(new FeedbackInput(entries[0].Id, 1, RatingScale.Thumbs, 1, null, null, null));
        await store.UpsertFeedbackAsync(new FeedbackInput(entries[1].Id, 1, RatingScale.Thumbs, 1, null, null, null));
        await store.AppendAsync([entries[2]]);

        await store.TrimAsync();

        Assert.Null(await store.GetAsync(entries[0].Id));
        Assert.Equal(1, (await store.CountFeedbackSinceAsync("alpha", null)).Count);
        Assert.NotNull((await store.GetAsync(entries[1].Id))!.Feedback);
        Assert.Equal(FeedbackStatus.NotFound, (await store.UpsertFeedbackAsync(new FeedbackInput(entries[0].Id, 1, RatingScale.Thumbs, 1, null, null, null))).Status);
    }

    [Fact]
    public async Task DataOutlivesTheStoreInstance()
    {
        var options = NewOptions();
        var store = Open(options);
        var entries = Enumerable.Range(0, 5).Select(i => Entries.Full(Entries.NewId(), "alpha", Entries.T0.AddSeconds(i))).ToList();
        await store.AppendAsync(entries);
        await store.UpsertFeedbackAsync(new FeedbackInput(entries[1].Id, -1, RatingScale.Thumbs, -1, "fix", null, null));
        var cursor = (await store.CountFeedbackSinceAsync("alpha", null)).Cursor;
        _stores.Remove(store);
        Release(store);

        var reopened = Open(options);
        var late = Entries.Full(Entries.NewId(), "alpha", Entries.T0);
        await reopened.AppendAsync([late, entries[0]]);
        await reopened.UpsertFeedbackAsync(new FeedbackInput(entries[2].Id, 1, RatingScale.Thumbs, 1, null, null, null));

        var page = await reopened.QueryAsync(new TrafficQuery { Adapter = "alpha" });
        Assert.Equal([.. entries.Select(e => e.Id), late.Id], page.Items.Select(r => r.Entry.Id));
        Assert.True(page.Items[^1].Position > page.Items[^2].Position);
        Assert.Equal("fix", page.Items[1].Feedback?.Correction);
        Assert.Equal(1, (await reopened.CountFeedbackSinceAsync("alpha", cursor)).Count);
    }

    private protected ITrafficStore Open(TrafficLogOptions options)
    {
        var store = CreateStore(options, Clock);
        _stores.Add(store);
        return store;
    }
}

/// <summary>The contract against the embedded file store.</summary>
public sealed class FileTrafficStoreContractTests : TrafficStoreContractTests, IDisposable
{
    private readonly TempDirectory _directory = new();

    protected override int ApproximateTrimSlack => 0;

    protected override TrafficLogOptions NewOptions() => new() { DataDirectory = _directory.Path };

    private protected override ITrafficStore CreateStore(TrafficLogOptions options, TimeProvider time) =>
        new FileTrafficStore(Options.Create(options), time);

    public void Dispose() => _directory.Dispose();
}

/// <summary>The contract against Redis (a private redis-server per test class).</summary>
public sealed class RedisTrafficStoreContractTests(RedisServerFixture redis) : TrafficStoreContractTests, IClassFixture<RedisServerFixture>
{
    private IConnectionMultiplexer? _connection;

    // XADD MAXLEN ~ removes whole radix-tree nodes (stream-node-max-entries, 100 by default).
    protected override int ApproximateTrimSlack => 100;

    public override async Task InitializeAsync() =>
        _connection = await RedisConnection.ConnectAsync(redis.ConnectionString);

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }

    protected override TrafficLogOptions NewOptions() => new() { KeyPrefix = "test-" + Guid.NewGuid().ToString("N") };

    private protected override ITrafficStore CreateStore(TrafficLogOptions options, TimeProvider time) =>
        new RedisTrafficStore(_connection!, Options.Create(options), time);
}
