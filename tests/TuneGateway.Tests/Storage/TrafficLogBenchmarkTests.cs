using Microsoft.Extensions.Options;
using StackExchange.Redis;
using TuneGateway.Storage;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Storage;

/// <summary>Checks that the benchmark runs and reports consistently (it measures nothing here).</summary>
public sealed class TrafficLogBenchmarkTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    [Fact]
    public async Task TheBenchmarkWritesEveryEntryToTheEmbeddedStore()
    {
        using var directory = new TempDirectory();
        using var store = new FileTrafficStore(Options.Create(new TrafficLogOptions { DataDirectory = directory.Path }));

        var result = await TrafficLogBenchmark.RunAsync(store, new TrafficLogBenchmarkOptions { Entries = 2000, WarmupEntries = 500, Label = "embedded" });

        output.WriteLine(TrafficLogBenchmarkResult.TableHeader);
        output.WriteLine(result.ToTableRow());
        Assert.Equal(2000, result.Written);
        Assert.Equal(0, result.Dropped);
        Assert.True(result.EntriesPerSecond > 0);
        Assert.StartsWith("| embedded | 2000 | 256 | ", result.ToTableRow(), StringComparison.Ordinal);
        Assert.Equal(2500, (await store.ListAdaptersAsync()).Single(s => s.Adapter == "bench").Count);
    }

    [Fact]
    public async Task TheBenchmarkWritesEveryEntryToRedis()
    {
        await using var connection = await RedisConnection.ConnectAsync(redis.ConnectionString);
        var prefix = "bench-" + Guid.NewGuid().ToString("N");
        var store = new RedisTrafficStore(connection, Options.Create(new TrafficLogOptions { KeyPrefix = prefix }));

        var result = await TrafficLogBenchmark.RunAsync(store, new TrafficLogBenchmarkOptions { Entries = 2000, WarmupEntries = 500 });

        output.WriteLine(result.ToTableRow());
        Assert.Equal(2000, result.Written);
        Assert.Equal("RedisTrafficStore", result.Store);
        Assert.Equal(2500, await connection.GetDatabase().StreamLengthAsync($"{prefix}:traffic:bench"));
    }
}
