using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;

namespace TuneGateway.Cli.Bench;

/// <summary>What the gateway suite measures.</summary>
internal sealed record GatewayBenchOptions
{
    public required EngineOptions Engine { get; init; }
    public IReadOnlyList<int> Concurrency { get; init; } = [1, 64];
    /// <summary>Requests each client sends per measured run.</summary>
    public int RequestsPerClient { get; init; } = 40;
    /// <summary>Requests at least, per measured run (so one client sends enough for a p99).</summary>
    public int MinRequests { get; init; } = 400;
}

/// <summary>
/// Gateway overhead: one worker and one gateway in front of it (both in this process, on
/// loopback); 1-token completions sent straight to the worker and through the gateway, at each
/// concurrency, alternating; p50 and p99 latency and requests/s, and their ratios.
/// </summary>
internal static class GatewayBench
{
    public static async Task RunAsync(GatewayBenchOptions options, TextWriter output, CancellationToken cancellationToken)
    {
        var settings = new HostSettings { Urls = ["http://127.0.0.1:0"], ConfigureLogging = l => l.SetMinimumLevel(LogLevel.Warning) };
        await using var worker = WorkerHost.Create(new WorkerOptions { Engine = options.Engine with { MaxQueue = 4096 } }, settings);
        await worker.StartAsync(cancellationToken);
        string workerUrl = Url(worker);
        await using var gateway = GatewayHost.Create(new GatewayOptions { Workers = [workerUrl] }, settings);
        await gateway.StartAsync(cancellationToken);
        string gatewayUrl = Url(gateway);

        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            Timeout = TimeSpan.FromMinutes(5),
        };
        await BenchHttp.WaitAsync(http, workerUrl + "/readyz", cancellationToken);
        await BenchHttp.WaitAsync(http, gatewayUrl + "/readyz", cancellationToken);
        string model = await BenchHttp.ModelIdAsync(http, workerUrl, cancellationToken);
        byte[] body = Encoding.UTF8.GetBytes($$"""{"model":"{{model}}","prompt":"Hello","max_tokens":1}""");

        output.WriteLine($"Gateway overhead: 1-token completions of {model} on {Environment.ProcessorCount} cores; worker and gateway in one process, loopback HTTP/1.1.");
        output.WriteLine();
        var table = new BenchTable(output, "clients", "path", "requests", "p50 ms", "p99 ms", "req/s", "p50 ratio", "p99 ratio", "req/s ratio");
        foreach (int clients in options.Concurrency)
        {
            int requests = Math.Max(options.MinRequests, clients * options.RequestsPerClient);
            // Warm both paths (connections, JIT, the gateway's routing state), then measure each.
            await MeasureAsync(http, workerUrl, body, clients, Math.Max(clients * 2, 50), cancellationToken);
            await MeasureAsync(http, gatewayUrl, body, clients, Math.Max(clients * 2, 50), cancellationToken);
            var direct = await MeasureAsync(http, workerUrl, body, clients, requests, cancellationToken);
            var proxied = await MeasureAsync(http, gatewayUrl, body, clients, requests, cancellationToken);
            table.Row(clients, "worker", requests, direct.P50, direct.P99, direct.Rps, double.NaN, double.NaN, double.NaN);
            table.Row(clients, "gateway", requests, proxied.P50, proxied.P99, proxied.Rps, proxied.P50 / direct.P50, proxied.P99 / direct.P99, proxied.Rps / direct.Rps);
        }
        output.WriteLine();
        await gateway.StopAsync(cancellationToken);
        await worker.StopAsync(cancellationToken);
    }

    private sealed record Result(double P50, double P99, double Rps);

    private static async Task<Result> MeasureAsync(HttpClient http, string baseUrl, byte[] body, int clients, int requests, CancellationToken cancellationToken)
    {
        var (latencies, seconds) = await BenchHttp.MeasureAsync(http, baseUrl, body, clients, requests, cancellationToken);
        Array.Sort(latencies);
        return new Result(BenchHttp.Percentile(latencies, 0.50), BenchHttp.Percentile(latencies, 0.99), requests / seconds);
    }

    private static string Url(WebApplication app) => app.Urls.First(u => u.StartsWith("http://", StringComparison.Ordinal)).TrimEnd('/');
}
