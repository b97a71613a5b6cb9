using System.Diagnostics.Metrics;
using TuneGateway.Server.Common;

namespace TuneGateway.Server.Gateway;

/// <summary>The gateway's metrics (meter <c>TuneGateway.Server</c>): requests by model and arm, retries, workers.</summary>
public sealed class GatewayMetrics
{
    private readonly Counter<long> _requests;
    private readonly Counter<long> _retries;

    public GatewayMetrics(IMeterFactory meters, WorkerRegistry registry)
    {
        // The factory owns (and disposes) the meter with the service provider.
        var meter = meters.Create(ServerTelemetry.Name);
        _requests = meter.CreateCounter<long>("tunegw.gateway.requests", "{request}", "Requests proxied, by requested model, resolved model (the A/B arm) and status.");
        _retries = meter.CreateCounter<long>("tunegw.gateway.retries", "{request}", "Requests retried on another worker after a failure before any response.");
        meter.CreateObservableGauge("tunegw.gateway.workers", () => new[]
        {
            new Measurement<int>(registry.All.Count(w => w.State?.Ready == true), new KeyValuePair<string, object?>("state", "ready")),
            new Measurement<int>(registry.All.Count(w => w.State?.Ready != true), new KeyValuePair<string, object?>("state", "unknown")),
        }, "{worker}", "Workers in the pool.");
    }

    public void Proxied(GatewayRoute target, int status) => _requests.Add(1,
        new KeyValuePair<string, object?>("model", target.RequestedModel),
        new KeyValuePair<string, object?>("resolved_model", target.Model),
        new KeyValuePair<string, object?>("status", status));

    public void Retried() => _retries.Add(1);
}
