using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>Redis specifics: the key layout, the connection helper and the DI wiring for Redis.</summary>
public sealed class RedisTrafficStoreTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly string _prefix = "layout-" + Guid.NewGuid().ToString("N");
    private IConnectionMultiplexer? _connection;

    private IDatabase Db => _connection!.GetDatabase();

    public async Task InitializeAsync() => _connection = await RedisConnection.ConnectAsync(redis.ConnectionString);

    public async Task DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }

    [Fact]
    public async Task EachAdapterIsAStreamOfFlatFieldsUnderThePrefix()
    {
        var store = Store(new TrafficLogOptions { KeyPrefix = _prefix });
        var entry = Entries.Full(Entries.NewId(), "support-bot");
        await store.AppendAsync([entry, Entries.Minimal(Entries.NewId())]);

        Assert.Equal(RedisType.Stream, await Db.KeyTypeAsync($"{_prefix}:traffic:support-bot"));
        Assert.Equal(RedisType.Stream, await Db.KeyTypeAsync($"{_prefix}:traffic:{TrafficEntry.NoAdapterStream}"));
        var stored = (await Db.StreamRangeAsync($"{_prefix}:traffic:support-bot", "-", "+")).Single();
        Assert.Equal(new LogPosition(entry.Timestamp.ToUnixTimeMilliseconds(), 0).ToString(), (string)stored.Id!);
        Assert.Equal(entry.Prompt, (string)stored["prompt"]!);
        Assert.Equal("200", (string)stored["status"]!);
        Assert.Equal(entry.ApiKeyId, (string)stored["api_key_id"]!);
        Assert.Equal(
            [TrafficEntry.NoAdapterStream, "support-bot"],
            (await Db.SetMembersAsync($"{_prefix}:traffic-adapters")).Select(v => (string)v!).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task TheIdIndexExpiresWithTheMaximumAge()
    {
        var store = Store(new TrafficLogOptions { KeyPrefix = _prefix, MaxAge = TimeSpan.FromHours(2) });
        var entry = Entries.Full(Entries.NewId());
        await store.AppendAsync([entry]);

        var ttl = await Db.KeyTimeToLiveAsync($"{_prefix}:traffic-id:{entry.Id}");

        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value, TimeSpan.FromHours(1), TimeSpan.FromHours(2));
    }

    [Fact]
    public async Task AppendsTrimApproximatelyAsTheyGo()
    {
        var store = Store(new TrafficLogOptions { KeyPrefix = _prefix, MaxEntriesPerStream = 50 });
        for (var batch = 0; batch < 10; batch++)
        {
            await store.AppendAsync(Enumerable.Range(0, 100).Select(i => Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddSeconds((batch * 100) + i))).ToList());
        }

        var length = await Db.StreamLengthAsync($"{_prefix}:traffic:alpha");

        Assert.InRange(length, 50, 50 + 100);
    }

    [Fact]
    public async Task FeedbackIsAHashPerAdapterWithAChangeSequence()
    {
        var store = Store(new TrafficLogOptions { KeyPrefix = _prefix });
        var entry = Entries.Full(Entries.NewId(), "alpha");
        await store.AppendAsync([entry]);
        await store.UpsertFeedbackAsync(new FeedbackInput(entry.Id, 1, RatingScale.Thumbs, 1, "fix", null, null));
        await store.UpsertFeedbackAsync(new FeedbackInput(entry.Id, -1, RatingScale.Thumbs, -1, "fix", null, null));

        Assert.Equal(1, await Db.HashLengthAsync($"{_prefix}:feedback:alpha"));
        Assert.Equal(2, await Db.SortedSetScoreAsync($"{_prefix}:feedback-seq:alpha", entry.Id));
        Assert.Equal(2, (long)await Db.StringGetAsync($"{_prefix}:feedback-counter"));
    }

    [Fact]
    public async Task PositionsStayOrderedWhenTheTailIsUnknown()
    {
        var store = Store(new TrafficLogOptions { KeyPrefix = _prefix });
        await store.AppendAsync([Entries.Minimal(Entries.NewId(), "alpha", Entries.T0.AddSeconds(10))]);
        await Db.KeyDeleteAsync($"{_prefix}:traffic-tails");
        var older = Entries.Minimal(Entries.NewId(), "alpha", Entries.T0);

        Assert.Equal(1, await store.AppendAsync([older]));

        var page = await store.QueryAsync(new TrafficQuery { Adapter = "alpha" });
        Assert.Equal(2, page.Items.Count);
        Assert.Equal(older.Id, page.Items[1].Entry.Id);
        Assert.True(page.Items[1].Position > page.Items[0].Position);
    }

    [Fact]
    public async Task TheConnectionHelperDoesNotFailWithoutAServerAndConnectsWhenOneStarts()
    {
        var port = RedisServerFixture.FreePort();
        await using var connection = await RedisConnection.ConnectAsync($"127.0.0.1:{port},connectTimeout=500");
        Assert.False(connection.IsConnected);

        var late = await RedisServerFixture.StartOnPortAsync(port);
        try
        {
            await Eventually.TrueAsync(() => connection.IsConnected, "the multiplexer connects in the background");
            Assert.True(await connection.GetDatabase().PingAsync() >= TimeSpan.Zero);
        }
        finally
        {
            await late.DisposeAsync();
        }
    }

    [Fact]
    public void TheConnectionHelperAppliesDefaultsButKeepsExplicitSettings()
    {
        var options = RedisConnection.CreateOptions("127.0.0.1:6379,connectTimeout=1234,abortConnect=true");

        Assert.False(options.AbortOnConnectFail);
        Assert.Equal(1234, options.ConnectTimeout);
        Assert.Equal(5000, options.AsyncTimeout);
        Assert.Equal(5000, options.SyncTimeout);
        Assert.IsType<ExponentialRetry>(options.ReconnectRetryPolicy);
    }

    [Fact]
    public async Task AddTrafficLogWithAConnectionStringUsesRedisAndSharesTheMultiplexer()
    {
        using var directory = new TempDirectory();
        var services = new ServiceCollection()
            .AddLogging()
            .AddTrafficLog(o =>
            {
                o.RedisConnectionString = redis.ConnectionString;
                o.KeyPrefix = _prefix;
                o.SpillDirectory = directory.Path;
            });
        await using var provider = services.BuildServiceProvider();

        var store = provider.GetRequiredService<ITrafficStore>();
        var log = provider.GetRequiredService<ITrafficLog>();
        var feedback = provider.GetRequiredService<IFeedbackService>();
        var hosted = provider.GetServices<IHostedService>().Single();
        Assert.IsType<RedisTrafficStore>(store);
        Assert.Same(store, provider.GetRequiredService<ITrafficReader>());
        Assert.Same(log, hosted);
        Assert.True(provider.GetRequiredService<IConnectionMultiplexer>().IsConnected);

        await hosted.StartAsync(CancellationToken.None);
        var entry = Entries.Full(Entries.NewId(), "alpha", DateTimeOffset.UtcNow) with { ApiKeyId = "key-1" };
        Assert.Equal(TrafficLogDecision.Accepted, log.Record(entry));
        var result = await feedback.SubmitAsync(new FeedbackRequest(entry.Id, Stars: 5, Correction: "better"), "key-1");
        await hosted.StopAsync(CancellationToken.None);

        Assert.Equal(FeedbackStatus.Created, result.Status);
        Assert.Equal(1.0, (await store.GetAsync(entry.Id))!.Feedback!.Score);
    }

    private RedisTrafficStore Store(TrafficLogOptions options) => new(_connection!, Options.Create(options), new ManualTimeProvider(Entries.T0.AddMinutes(5)));
}
