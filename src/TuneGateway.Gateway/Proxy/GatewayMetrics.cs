using System.Diagnostics.Metrics;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Gateway.Proxy;

/// <summary>The gateway's metrics (meter <c>TuneGateway.Server</c>): requests by model and arm, retries, workers.</summary>
public sealed class GatewayMetrics
{
    /// <summary>The label value of every model the server does not know: clients cannot create series at will.</summary>
    public const string OtherModel = "other";

    private readonly Counter<long> _requests;
    private readonly Counter<long> _retries;
    private readonly WorkerRegistry _registry;
    private readonly AliasResolver _aliases;

    public GatewayMetrics(IMeterFactory meters, WorkerRegistry registry, AliasResolver aliases)
    {
        _registry = registry;
        _aliases = aliases;
        // The factory owns (and disposes) the meter with the service provider.
        var meter = meters.Create(ServerTelemetry.Name);
        _requests = meter.CreateCounter<long>("tunegw.gateway.requests", "{request}", "Requests proxied, by requested model, resolved model (the A/B arm) and status.");
        _retries = meter.CreateCounter<long>("tunegw.gateway.retries", "{request}", "Requests retried on another worker after a failure before any response.");
        meter.CreateObservableGauge("tunegw.gateway.workers", () =>
        {
            var all = registry.All;
            int ready = all.Count(w => w.IsRoutable);
            return new[]
            {
                new Measurement<int>(ready, new KeyValuePair<string, object?>("state", "ready")),
                new Measurement<int>(all.Count - ready, new KeyValuePair<string, object?>("state", "unknown")),
            };
        }, "{worker}", "Workers in the pool.");
    }

    public void Proxied(GatewayRoute target, int status) => _requests.Add(1,
        new KeyValuePair<string, object?>("model", Label(target.RequestedModel, status)),
        new KeyValuePair<string, object?>("resolved_model", Label(target.Model, status)),
        new KeyValuePair<string, object?>("status", status));

    /// <summary>
    /// The model as a label value: kept when a worker served it (it exists, and what exists is bounded
    /// by what is deployed) or when a worker or alias names it; otherwise <see cref="OtherModel"/>.
    /// </summary>
    private string Label(string model, int status) =>
        status is >= 200 and < 300 || _registry.Knows(model) || _aliases.IsAlias(model) ? model : OtherModel;

    public void Retried() => _retries.Add(1);
}
