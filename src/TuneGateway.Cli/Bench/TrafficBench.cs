using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using TuneGateway.Engine.Serving;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;
using TuneGateway.Storage;

namespace TuneGateway.Cli.Bench;

/// <summary>What the traffic suite measures.</summary>
internal sealed record TrafficBenchOptions
{
    public required EngineOptions Engine { get; init; }
    /// <summary>Concurrent clients of the latency runs.</summary>
    public IReadOnlyList<int> Concurrency { get; init; } = [1, 16];
    /// <summary>Entries the writer benchmark records per store.</summary>
    public int WriterEntries { get; init; } = 20_000;
    /// <summary>Requests per host and round (at least; each client sends <see cref="RequestsPerClient"/>).</summary>
    public int MinRequests { get; init; } = 300;
    public int RequestsPerClient { get; init; } = 20;
    /// <summary>Rounds per concurrency; the hosts are measured in a rotating order each round, so that load on the machine hits all alike.</summary>
    public int Rounds { get; init; } = 5;
}

/// <summary>
/// The traffic log's cost: (1) the entries per second the background writer sustains into the
/// embedded store and into Redis (a private <c>redis-server</c> on a free port, when one is installed);
/// (2) 1-token completions through <c>serve</c> with the log off and on (each store), in the same run,
/// interleaved: p50 and p99 latency and requests/s, and their ratios to logging off; a second host
/// without the log (A/A) shows the noise between identical hosts.
/// </summary>
internal static class TrafficBench
{
    public static async Task RunAsync(TrafficBenchOptions options, TextWriter output, CancellationToken cancellationToken)
    {
        string scratch = Directory.CreateTempSubdirectory("tunegw-bench-traffic-").FullName;
        RedisServerProcess? redis = null;
        try
        {
            redis = await RedisServerProcess.TryStartAsync(Path.Combine(scratch, "redis"), output, cancellationToken);
            await WriterAsync(options, scratch, redis, output, cancellationToken);
            await LatencyAsync(options, scratch, redis, output, cancellationToken);
        }
        finally
        {
            redis?.Dispose();
            try
            {
                Directory.Delete(scratch, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static async Task WriterAsync(TrafficBenchOptions options, string scratch, RedisServerProcess? redis, TextWriter output, CancellationToken cancellationToken)
    {
        output.WriteLine($"Traffic log writer: {options.WriterEntries:N0} entries (1,000-character prompt, 400-character completion, redaction on) recorded at once; " +
            $"time until all are in the store; {Environment.ProcessorCount} cores.");
        output.WriteLine();
        var table = new BenchTable(output, "store", "entries", "batch", "seconds", "entries/s", "dropped");
        var benchmark = new TrafficLogBenchmarkOptions { Entries = options.WriterEntries };

        using (var embedded = new FileTrafficStore(Options.Create(new TrafficLogOptions { DataDirectory = Path.Combine(scratch, "writer-embedded"), TrimInterval = TimeSpan.FromHours(1) })))
        {
            var result = await TrafficLogBenchmark.RunAsync(embedded, benchmark with { Label = "embedded (fsync per batch)" }, cancellationToken);
            table.Row(result.Store, result.Entries, result.BatchSize, result.Elapsed.TotalSeconds, result.EntriesPerSecond, result.Dropped);
        }

        if (redis is not null)
        {
            await using var connection = await RedisConnection.ConnectAsync(redis.ConnectionString);
            var store = new RedisTrafficStore(connection, Options.Create(new TrafficLogOptions { KeyPrefix = "bench-" + Guid.NewGuid().ToString("N")[..8] }));
            var result = await TrafficLogBenchmark.RunAsync(store, benchmark with { Label = "redis (loopback)" }, cancellationToken);
            table.Row(result.Store, result.Entries, result.BatchSize, result.Elapsed.TotalSeconds, result.EntriesPerSecond, result.Dropped);
        }
        output.WriteLine();
    }

    /// <summary>One serve host under test (compared by reference: it keys the per-host tallies).</summary>
    private sealed class Host(string label, WebApplication app, string url, ITrafficLog? log)
    {
        public string Label { get; } = label;
        public WebApplication App { get; } = app;
        public string Url { get; } = url;
        public ITrafficLog? Log { get; } = log;
        /// <summary>Requests sent to the host so far (each one is a traffic entry when the log is on).</summary>
        public long Sent { get; set; }
    }

    private static async Task LatencyAsync(TrafficBenchOptions options, string scratch, RedisServerProcess? redis, TextWriter output, CancellationToken cancellationToken)
    {
        // Warnings only, without the open-mode notice each host would print.
        var settings = new HostSettings { Urls = ["http://127.0.0.1:0"], ConfigureLogging = l => l.SetMinimumLevel(LogLevel.Warning).AddFilter("tunegw", LogLevel.Error) };
        var engine = options.Engine with { MaxQueue = 4096 };
        // Two hosts without the log: the second ("off, A/A") shows how far two identical hosts differ on this machine.
        var variants = new List<(string Label, TrafficLogSettings? Traffic)>
        {
            ("off", null),
            ("off, A/A", null),
            ("embedded", new TrafficLogSettings { DataDirectory = Path.Combine(scratch, "serve-embedded") }),
        };
        if (redis is not null)
            variants.Add(("redis", new TrafficLogSettings { RedisConnectionString = redis.ConnectionString, DataDirectory = Path.Combine(scratch, "serve-redis") }));

        var hosts = new List<Host>();
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
        {
            Timeout = TimeSpan.FromMinutes(5),
        };
        try
        {
            foreach (var (label, traffic) in variants)
            {
                var app = ServeHost.Create(new WorkerOptions { Engine = engine }, new GatewayOptions(), settings, traffic: traffic);
                await app.StartAsync(cancellationToken);
                string url = app.Urls.First(u => u.StartsWith("http://", StringComparison.Ordinal)).TrimEnd('/');
                hosts.Add(new Host(label, app, url, app.Services.GetService<ITrafficLog>()));
                await BenchHttp.WaitAsync(http, url + "/readyz", cancellationToken);
            }
            string model = await BenchHttp.ModelIdAsync(http, hosts[0].Url, cancellationToken);
            byte[] body = Encoding.UTF8.GetBytes($$"""{"model":"{{model}}","prompt":"Hello","max_tokens":1,"user":"bench"}""");

            output.WriteLine($"Request latency with the traffic log off and on: 1-token completions of {model} through serve (gateway and in-process worker), " +
                $"{options.Rounds} interleaved rounds per row, all hosts in this process, loopback HTTP/1.1.");
            output.WriteLine();
            var table = new BenchTable(output, "clients", "log", "requests", "p50 ms", "p99 ms", "req/s", "p50 ratio", "p99 ratio", "req/s ratio", "logged", "dropped");
            foreach (int clients in options.Concurrency)
            {
                int requests = Math.Max(options.MinRequests, clients * options.RequestsPerClient);
                int warmup = Math.Max(clients * 2, 50);
                foreach (var host in hosts)
                {
                    await BenchHttp.MeasureAsync(http, host.Url, body, clients, warmup, cancellationToken);
                    host.Sent += warmup;
                    if (host.Log is not null) await DrainAsync(host.Log, host.Sent, cancellationToken);
                }

                var latencies = hosts.ToDictionary(h => h, _ => new List<double>());
                var seconds = hosts.ToDictionary(h => h, _ => 0.0);
                var before = hosts.ToDictionary(h => h, h => h.Log?.GetStatistics());
                for (int round = 0; round < options.Rounds; round++)
                {
                    for (int i = 0; i < hosts.Count; i++)
                    {
                        var host = hosts[(i + round) % hosts.Count];
                        var (measured, elapsed) = await BenchHttp.MeasureAsync(http, host.Url, body, clients, requests, cancellationToken);
                        latencies[host].AddRange(measured);
                        seconds[host] += elapsed;
                        host.Sent += requests;
                    }
                }

                double baseP50 = 0, baseP99 = 0, baseRps = 0;
                foreach (var host in hosts)
                {
                    var sorted = latencies[host].Order().ToArray();
                    double p50 = BenchHttp.Percentile(sorted, 0.50), p99 = BenchHttp.Percentile(sorted, 0.99), rps = sorted.Length / seconds[host];
                    bool baseline = ReferenceEquals(host, hosts[0]);
                    if (baseline) (baseP50, baseP99, baseRps) = (p50, p99, rps);
                    var (logged, dropped) = (double.NaN, double.NaN);
                    if (host.Log is not null)
                    {
                        var after = await DrainAsync(host.Log, host.Sent, cancellationToken);
                        var start = before[host]!;
                        (logged, dropped) = (after.Written + after.Replayed - start.Written - start.Replayed, after.Dropped - start.Dropped);
                    }
                    table.Row(clients, host.Label, sorted.Length, p50, p99, rps,
                        baseline ? double.NaN : p50 / baseP50, baseline ? double.NaN : p99 / baseP99, baseline ? double.NaN : rps / baseRps,
                        logged, dropped);
                }
            }
            output.WriteLine();
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.App.StopAsync(CancellationToken.None);
                await host.App.DisposeAsync();
            }
        }
    }

    /// <summary>Waits (a minute at most) until the writer has written or dropped <paramref name="entries"/> entries since it started.</summary>
    private static async Task<TrafficLogStatistics> DrainAsync(ITrafficLog log, long entries, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var statistics = log.GetStatistics();
        while (statistics.Written + statistics.Replayed + statistics.Dropped < entries && clock.Elapsed < TimeSpan.FromMinutes(1))
        {
            await Task.Delay(10, cancellationToken);
            statistics = log.GetStatistics();
        }
        return statistics;
    }

}

/// <summary>A throwaway <c>redis-server</c> (no persistence) on a free loopback port, for the benchmark.</summary>
internal sealed class RedisServerProcess : IDisposable
{
    private readonly Process _process;

    private RedisServerProcess(Process process, int port)
    {
        _process = process;
        ConnectionString = $"127.0.0.1:{port}";
    }

    public string ConnectionString { get; }

    /// <summary>Starts redis-server from PATH (or <c>TUNEGW_REDIS_SERVER</c>); null, with a note, when there is none.</summary>
    public static async Task<RedisServerProcess?> TryStartAsync(string directory, TextWriter output, CancellationToken cancellationToken)
    {
        string? executable = Environment.GetEnvironmentVariable("TUNEGW_REDIS_SERVER") is { Length: > 0 } configured ? configured
            : (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
                .Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);
        if (executable is null || !File.Exists(executable))
        {
            output.WriteLine("redis-server was not found (PATH or TUNEGW_REDIS_SERVER): the Redis rows are left out.");
            output.WriteLine();
            return null;
        }

        Directory.CreateDirectory(directory);
        int port = FreePort();
        var start = new ProcessStartInfo(executable) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory })
            start.ArgumentList.Add(argument);
        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start.");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new RedisServerProcess(process, port);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                server.Dispose();
                throw new InvalidOperationException($"redis-server exited with code {process.ExitCode} on port {port}.");
            }
            try
            {
                await using var probe = await ConnectionMultiplexer.ConnectAsync(new ConfigurationOptions { EndPoints = { server.ConnectionString }, AbortOnConnectFail = true, ConnectTimeout = 1000 });
                await probe.GetDatabase().PingAsync();
                return server;
            }
            catch (RedisConnectionException) when (clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(50, cancellationToken);
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
