using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Health;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// Keeps YARP's configuration in step with the <see cref="WorkerRegistry"/> (one cluster of all
/// workers, routed by <see cref="AdapterAffinityPolicy"/>, with active health checks against
/// <c>/readyz</c>, passive failure detection and a long activity timeout); prunes workers that
/// stopped reporting and polls configured workers that do not push their state.
/// </summary>
public sealed class GatewayProxyConfig(InMemoryConfigProvider provider, WorkerRegistry registry, GatewayOptions options, WorkerCredentials credentials,
    IHttpClientFactory clients, ILogger<GatewayProxyConfig> logger) : BackgroundService
{
    public const string ClusterId = "workers";
    public const string HttpClientName = "tunegw-workers";

    /// <summary>The proxied routes: the two generation endpoints and vLLM's tokenizer endpoints, all routed by their <c>model</c>.</summary>
    public static IReadOnlyList<RouteConfig> Routes { get; } =
    [
        Route("completions", "/v1/completions"),
        Route("chat-completions", "/v1/chat/completions"),
        Route("tokenize", "/tokenize"),
        Route("detokenize", "/detokenize"),
    ];

    /// <summary>
    /// The routes whose exchanges are traffic (the request observer sees them); tokenizing is
    /// not a completion and stays out of the traffic log.
    /// </summary>
    public static bool IsGeneration(string path) => path is "/v1/completions" or "/v1/chat/completions";

    private static RouteConfig Route(string id, string path) => new()
    {
        RouteId = id,
        ClusterId = ClusterId,
        Match = new RouteMatch { Path = path, Methods = ["POST"] },
        AuthorizationPolicy = Policies.Inference,
    };

    public ClusterConfig Cluster() => new()
    {
        ClusterId = ClusterId,
        LoadBalancingPolicy = AdapterAffinityPolicy.PolicyName,
        Destinations = registry.All.ToDictionary(w => w.Url, w => new DestinationConfig { Address = w.Url }, StringComparer.OrdinalIgnoreCase),
        HealthCheck = new HealthCheckConfig
        {
            Active = new ActiveHealthCheckConfig
            {
                Enabled = true,
                Interval = options.HealthCheckInterval,
                Timeout = options.HealthCheckTimeout,
                Policy = HealthCheckConstants.ActivePolicy.ConsecutiveFailures,
                Path = "/readyz",
            },
            Passive = new PassiveHealthCheckConfig
            {
                Enabled = true,
                Policy = HealthCheckConstants.PassivePolicy.TransportFailureRate,
                ReactivationPeriod = options.ReactivationPeriod,
            },
        },
        HttpRequest = new ForwarderRequestConfig { ActivityTimeout = options.ActivityTimeout },
    };

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        registry.TopologyChanged += Apply;
        Apply();
        return base.StartAsync(cancellationToken);
    }

    public override Task StopAsync(CancellationToken cancellationToken)
    {
        registry.TopologyChanged -= Apply;
        return base.StopAsync(cancellationToken);
    }

    private void Apply()
    {
        lock (provider)
        {
            provider.Update(Routes, [Cluster()]);
        }
        logger.LogInformation("Worker pool: {Workers}", registry.All.Count == 0 ? "empty" : string.Join(", ", registry.All.Select(w => w.Url)));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.PoolSweepInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                registry.Prune(options.StaleAfter, AdapterAffinityPolicy.RouteWindow);
                await PollSilentWorkersAsync(stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Configured workers that have not pushed lately are asked for their state (<c>GET /internal/state</c>).</summary>
    private async Task PollSilentWorkersAsync(CancellationToken cancellationToken)
    {
        // Half the silence after which /admin/workers calls a worker silent: a polled worker answers well before.
        var silent = registry.All.Where(w => w.Trust == WorkerTrust.Configured && registry.SinceLastReport(w) > options.SilentAfter / 2).ToArray();
        await Task.WhenAll(silent.Select(async worker =>
        {
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, worker.Url + "/internal/state");
                credentials.Apply(request.Headers, worker, clientAuthorization: null, clientApiKey: null);
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(options.StatePollTimeout);
                using var response = await clients.CreateClient(HttpClientName).SendAsync(request, timeout.Token).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode) return;
                var state = await response.Content.ReadFromJsonAsync<WorkerState>(ServerJson.Options, timeout.Token).ConfigureAwait(false);
                if (state is not null) registry.Report(state with { Url = worker.Url });
            }
            catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or System.Text.Json.JsonException)
            {
                // Unreachable: the health checks take it out of the pool.
            }
        })).ConfigureAwait(false);
    }
}
