using System.Diagnostics;
using System.Text;
using System.Text.Json;
using StackExchange.Redis;
using TuneGateway.Tests.Server;
using TuneGateway.Tests.Storage;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Controller;

/// <summary>
/// <c>tunegw demo</c> as a user runs it, on a real redis-server and on the embedded stores: the
/// retraining loop must promote the retrained v2, clearly more accurate on the drifted traffic, and
/// reject the candidate trained on corrupted labels; its state must live in Redis; and the same
/// seed must give the same result line both times (the demo is budgeted in tickets and steps, not time).
/// </summary>
public sealed class ClosedLoopDemoTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    [Fact]
    public async Task TheLoopPromotesV2StopsTheCorruptedCandidateAndGivesTheSameResultOnRedisAndOnTheEmbeddedStores()
    {
        var (onRedis, redisOutput) = await RunDemoAsync("--redis", redis.ConnectionString);
        // The README's promise, specifically: v2 wins (the first retrained candidate), the corrupted one is rejected by the offline gate,
        // and accuracy on the new vocabulary rises by far.
        Assert.Equal("ticket-router@v2", onRedis.GetProperty("promoted").GetString());
        Assert.Equal("rejected", onRedis.GetProperty("bad_candidate").GetString());
        double before = onRedis.GetProperty("accuracy_before").GetDouble(), after = onRedis.GetProperty("accuracy_after").GetDouble();
        Assert.True(after >= before + 0.3, $"accuracy rose only from {before} to {after}");
        Assert.True(onRedis.GetProperty("canary_tickets").GetInt32() > 0);
        Assert.Contains("drift on ticket-router@v1", redisOutput, StringComparison.Ordinal);

        // The registry, aliases, job history and traffic were in Redis under the demo's own prefix.
        await using (var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            var keys = connection.GetServer(connection.GetEndPoints()[0]).Keys(pattern: "tunegw-demo-*").Select(k => k.ToString()).ToList();
            Assert.Contains(keys, k => k.Contains("ticket-router", StringComparison.Ordinal));
            Assert.True(keys.Count >= 5, "the demo's state is in Redis: " + string.Join(", ", keys));
        }

        // Same seed, other stores, another run (and whatever else this machine is doing meanwhile): the same result line.
        var (embedded, _) = await RunDemoAsync();
        Assert.Equal(onRedis.GetRawText(), embedded.GetRawText());
    }

    /// <summary>Runs <c>tunegw demo</c> as a user does; returns its last line (the result) parsed, and everything it printed.</summary>
    private async Task<(JsonElement Result, string Output)> RunDemoAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in new[] { ServerTestHost.TunegwDll, "demo", "--timeout-minutes", "15" }.Concat(arguments))
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var reading = Task.WhenAll(Pump(process.StandardOutput, stdout), Pump(process.StandardError, stderr));
        using var patience = new CancellationTokenSource(TimeSpan.FromMinutes(17));
        try
        {
            await process.WaitForExitAsync(patience.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        await reading;
        output.WriteLine(stdout.ToString());
        output.WriteLine(stderr.ToString());
        Assert.True(process.ExitCode == 0, $"tunegw demo exited with {process.ExitCode}: {stderr}");
        string last = stdout.ToString().TrimEnd().Split('\n').Last();
        using var result = JsonDocument.Parse(last);
        return (result.RootElement.Clone(), stdout.ToString());
    }

    private static async Task Pump(StreamReader reader, StringBuilder sink)
    {
        while (await reader.ReadLineAsync() is { } line)
            lock (sink) sink.AppendLine(line);
    }
}
