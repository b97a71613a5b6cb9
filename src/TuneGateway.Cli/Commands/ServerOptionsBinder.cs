using System.CommandLine;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Proxy;

namespace TuneGateway.Cli.Commands;

/// <summary>Options of every HTTP role (worker, gateway, serve): listening addresses, API keys, telemetry.</summary>
internal sealed class ServerOptionsBinder(string defaultUrl)
{
    public Option<string[]> Urls { get; } = new("--urls")
    {
        Description = $"Addresses to listen on (comma-separated or repeated; port 0 picks a free one). Default: {defaultUrl}.",
        AllowMultipleArgumentsPerToken = false,
    };
    public Option<string?> ApiKey { get; } = new("--api-key") { Description = "One admin API key (quick start). Also TUNEGW_API_KEY." };
    public Option<string?> ApiKeys { get; } = new("--api-keys") { Description = "JSON secret file of API keys: {\"keys\": [{\"name\", \"key\" or \"sha256\", \"roles\", \"models\", \"requests_per_minute\"}]}." };
    public Option<string?> OtlpEndpoint { get; } = new("--otlp-endpoint") { Description = "OTLP collector for traces and metrics (or OTEL_EXPORTER_OTLP_ENDPOINT)." };
    public Option<string> LogLevel { get; } = new("--log-level") { Description = "Trace, Debug, Information, Warning, Error.", DefaultValueFactory = _ => "Information" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Urls, ApiKey, ApiKeys, OtlpEndpoint, LogLevel }) command.Options.Add(option);
    }

    public HostSettings Bind(ParseResult parse)
    {
        var keys = new List<ApiKeyEntry>();
        string? single = parse.GetValue(ApiKey) ?? Environment.GetEnvironmentVariable("TUNEGW_API_KEY");
        if (!string.IsNullOrEmpty(single)) keys.Add(new ApiKeyEntry { Name = "admin", Key = single, Roles = [Roles.Admin] });
        if (parse.GetValue(ApiKeys) is { } file) keys.AddRange(ApiKeyStore.ReadFile(file));
        var urls = (parse.GetValue(Urls) ?? []).SelectMany(u => u.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).ToArray();
        string level = parse.GetValue(LogLevel)!;
        if (!Enum.TryParse<LogLevel>(level, ignoreCase: true, out var minimum))
            throw new ArgumentException($"--log-level '{level}': expected Trace, Debug, Information, Warning or Error.");
        return new HostSettings
        {
            Urls = urls.Length > 0 ? urls : [defaultUrl],
            ApiKeys = keys,
            OtlpEndpoint = parse.GetValue(OtlpEndpoint),
            ConfigureLogging = logging => logging.SetMinimumLevel(minimum),
        };
    }
}

/// <summary>The gateway's routing and health options (gateway and serve).</summary>
internal sealed class GatewayOptionsBinder
{
    public Option<string[]> Workers { get; } = new("--workers") { Description = "Worker base URLs (comma-separated or repeated); more may register at runtime.", AllowMultipleArgumentsPerToken = false };
    public Option<string?> WorkerKey { get; } = new("--worker-key") { Description = "API key the gateway presents to configured workers and to workers registered with a worker-role key, instead of the client's (also TUNEGW_WORKER_KEY); must not be one of the gateway's own keys." };
    public Option<string[]> WorkerAllow { get; } = new("--worker-allow") { Description = "Where workers may register: CIDRs, host names (*.suffix) or URL prefixes (comma-separated or repeated; default anywhere).", AllowMultipleArgumentsPerToken = false };
    public Option<bool> ExposeWorkerHeader { get; } = new("--expose-worker-header") { Description = "Add X-TuneGateway-Worker (the serving worker's URL) to client responses: for debugging only." };
    public Option<double> StaleAfter { get; } = new("--worker-stale-after") { Description = "Seconds without a report after which a registered worker leaves the pool.", DefaultValueFactory = _ => 10 };
    public Option<double> ProxyTimeout { get; } = new("--proxy-timeout") { Description = "Seconds a forwarded request may stay idle (queue wait, prefill, a long non-streaming answer).", DefaultValueFactory = _ => 600 };
    public Option<int> AdapterMaxWorkers { get; } = new("--adapter-max-workers") { Description = "Workers one adapter spreads over when its workers are busy (more only when all are overloaded).", DefaultValueFactory = _ => 2 };
    public Option<double> HealthInterval { get; } = new("--health-interval") { Description = "Seconds between active health checks of each worker's /readyz.", DefaultValueFactory = _ => 5 };

    public void AddTo(Command command, bool withWorkers = true)
    {
        if (withWorkers) command.Options.Add(Workers);
        foreach (var option in new Option[] { WorkerKey, WorkerAllow, ExposeWorkerHeader, StaleAfter, ProxyTimeout, AdapterMaxWorkers, HealthInterval }) command.Options.Add(option);
    }

    public GatewayOptions Bind(ParseResult parse)
    {
        double Positive(Option<double> option) => parse.GetValue(option) is > 0 and var v ? v : throw new ArgumentException($"{option.Name} must be positive.");
        int spread = parse.GetValue(AdapterMaxWorkers);
        if (spread < 1) throw new ArgumentException("--adapter-max-workers must be at least 1.");
        return new GatewayOptions
        {
            Workers = (parse.GetValue(Workers) ?? []).SelectMany(u => u.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                .Select(u => WorkerRegistry.Normalize(u)).ToArray(),
            WorkerKey = parse.GetValue(WorkerKey) ?? Environment.GetEnvironmentVariable("TUNEGW_WORKER_KEY"),
            WorkerAllowList = (parse.GetValue(WorkerAllow) ?? []).SelectMany(u => u.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).ToArray(),
            ExposeWorkerHeader = parse.GetValue(ExposeWorkerHeader),
            StaleAfter = TimeSpan.FromSeconds(Positive(StaleAfter)),
            ActivityTimeout = TimeSpan.FromSeconds(Positive(ProxyTimeout)),
            AdapterMaxWorkers = spread,
            HealthCheckInterval = TimeSpan.FromSeconds(Positive(HealthInterval)),
        };
    }
}
