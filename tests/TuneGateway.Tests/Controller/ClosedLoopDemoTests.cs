using System.Diagnostics;
using System.Text;
using System.Text.Json;
using StackExchange.Redis;
using TuneGateway.Tests.Server;
using TuneGateway.Tests.Storage;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Controller;

/// <summary>
/// <c>tunegw demo --redis</c> as a user runs it, against a real redis-server: the retraining loop
/// must promote a retrained version that is clearly more accurate on the drifted traffic, and stop
/// the candidate trained on corrupted labels; its state must live in Redis.
/// </summary>
public sealed class ClosedLoopDemoTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>
{
    [Fact]
    public async Task TheLoopPromotesABetterVersionAndStopsTheCorruptedCandidateOnRedis()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in new[] { ServerTestHost.TunegwDll, "demo", "--redis", redis.ConnectionString, "--users", "4", "--timeout-minutes", "10" })
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var reading = Task.WhenAll(Pump(process.StandardOutput, stdout), Pump(process.StandardError, stderr));
        using var patience = new CancellationTokenSource(TimeSpan.FromMinutes(12));
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
        var root = result.RootElement;
        double before = root.GetProperty("accuracy_before").GetDouble(), after = root.GetProperty("accuracy_after").GetDouble();
        Assert.True(after >= before + 0.3, $"accuracy rose only from {before} to {after}");
        // The first retrained candidate does not always pass the gate; whichever version won, it is a retrained one.
        Assert.Matches(@"^ticket-router@v([2-9]|\d{2,})$", root.GetProperty("promoted").GetString());
        Assert.Contains(root.GetProperty("bad_candidate").GetString(), new[] { "rejected", "rolled_back" });
        Assert.True(root.GetProperty("seconds").GetDouble() > 0);
        Assert.Contains("drift", stdout.ToString(), StringComparison.Ordinal);

        // The registry, aliases, job history and traffic were in Redis under the demo's own prefix.
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var keys = connection.GetServer(connection.GetEndPoints()[0]).Keys(pattern: "tunegw-demo-*").Select(k => k.ToString()).ToList();
        Assert.Contains(keys, k => k.Contains("ticket-router", StringComparison.Ordinal));
        Assert.True(keys.Count >= 5, "the demo's state is in Redis: " + string.Join(", ", keys));
    }

    private static async Task Pump(StreamReader reader, StringBuilder sink)
    {
        while (await reader.ReadLineAsync() is { } line)
            lock (sink) sink.AppendLine(line);
    }
}
