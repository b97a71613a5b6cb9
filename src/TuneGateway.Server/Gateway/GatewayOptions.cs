namespace TuneGateway.Server.Gateway;

/// <summary>How the gateway finds, watches and routes to workers.</summary>
public sealed record GatewayOptions
{
    /// <summary>Worker base URLs known from the start (<c>--workers</c>); more register at runtime.</summary>
    public IReadOnlyList<string> Workers { get; init; } = [];
    /// <summary>
    /// API key presented to workers in place of the client's (the gateway has already checked the
    /// client); also used for the state poll of workers that do not push. Null: forward the client's.
    /// </summary>
    public string? WorkerKey { get; init; }
    /// <summary>A registered worker that has not reported for this long leaves the pool.</summary>
    public TimeSpan StaleAfter { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>
    /// YARP's idle timeout per forwarded request (its default is 100 s); generous so that a long
    /// queue wait or prefill, or a long non-streaming generation, is not cut.
    /// </summary>
    public TimeSpan ActivityTimeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Workers one adapter spreads over when its workers are busy, unless all of them are overloaded.</summary>
    public int AdapterMaxWorkers { get; init; } = 2;
    /// <summary>Interval of the active health checks against each worker's <c>/readyz</c>.</summary>
    public TimeSpan HealthCheckInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How often aliases are re-read from the store, besides its change events.</summary>
    public TimeSpan AliasRefresh { get; init; } = TimeSpan.FromSeconds(1);
}
