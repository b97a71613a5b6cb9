using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Options;
using TuneGateway.Storage;
using Xunit.Abstractions;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary><c>serve --redis</c> with a short write timeout, for the outage test (its own redis-server, which the test stops).</summary>
public sealed class OutageTrafficServeFixture : RedisTrafficServeFixture
{
    protected override void Configure(TrafficLogOptions options)
    {
        options.QueueCapacity = 100_000;
        options.BatchSize = 64;
        options.WriteTimeout = TimeSpan.FromSeconds(1);
    }
}

/// <summary>Redis stopped and restarted while requests keep coming through <c>serve --redis</c>.</summary>
public sealed class TrafficLogOutageTests(OutageTrafficServeFixture serve, ITestOutputHelper output) : IClassFixture<OutageTrafficServeFixture>
{
    [Fact]
    public async Task RedisStoppedAndRestartedUnderLoadFailsNoRequestAndLosesNoEntry()
    {
        var answered = new ConcurrentQueue<string>();
        var failures = new ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 4).Select(client => Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                try
                {
                    var (status, body, _) = await SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/v1/completions",
                        new { model = i % 2 == 0 ? "llama-tiny" : "support-bot@v3", prompt = $"client {client} request {i}", max_tokens = 1 }, TrafficServeFixture.AliceKey));
                    if (status == HttpStatusCode.OK) answered.Enqueue(body.GetProperty("id").GetString()!);
                    else failures.Enqueue($"{(int)status}: {body}");
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    failures.Enqueue(ex.Message);
                }
            }
        })).ToArray();

        try
        {
            await WaitUntilAsync(() => Task.FromResult(serve.Log.GetStatistics().Written >= 50), "entries written before the outage");
            await serve.Redis.StopAsync(save: true);
            await WaitUntilAsync(() => Task.FromResult(serve.Log.GetStatistics().Spilled >= 50), "entries spilled while Redis is down");
            int answeredDuringOutage = answered.Count;
            await serve.Redis.StartAsync();
            await WaitUntilAsync(() => Task.FromResult(serve.Log.GetStatistics().Replayed > 0), "the spill replayed once Redis is back");
            long writtenAfter = serve.Log.GetStatistics().Written;
            await WaitUntilAsync(() => Task.FromResult(serve.Log.GetStatistics().Written >= writtenAfter + 50), "new entries written straight to Redis again");
            Assert.True(answered.Count > answeredDuringOutage, "requests are answered after the restart");
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(clients);
        }

        Assert.Empty(failures);
        await WaitUntilAsync(() => Task.FromResult(serve.Log.GetStatistics().Backlog == 0), "the backlog to drain");
        var statistics = serve.Log.GetStatistics();
        output.WriteLine($"{answered.Count} requests; {statistics}");
        Assert.Equal(0, statistics.Dropped);
        Assert.True(statistics.Spilled >= 50 && statistics.Replayed == statistics.Spilled, statistics.ToString());

        // Every answered request is in Redis, read through a connection of its own.
        await using var connection = await RedisConnection.ConnectAsync(serve.Redis.ConnectionString);
        var store = new RedisTrafficStore(connection, Options.Create(new TrafficLogOptions { KeyPrefix = serve.KeyPrefix }));
        var missing = new List<string>();
        foreach (string id in answered)
        {
            if (await store.GetAsync(id) is null) missing.Add(id);
        }
        Assert.True(missing.Count == 0, $"{missing.Count} of {answered.Count} entries are missing from Redis, e.g. {string.Join(", ", missing.Take(5))}");
    }
}
