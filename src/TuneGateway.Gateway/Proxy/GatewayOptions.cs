namespace TuneGateway.Gateway.Proxy;

/// <summary>How the gateway finds, watches and routes to workers.</summary>
public sealed record GatewayOptions
{
    /// <summary>Worker base URLs known from the start (<c>--workers</c>); more register at runtime.</summary>
    public IReadOnlyList<string> Workers { get; init; } = [];
    /// <summary>
    /// API key presented to configured workers and to workers that registered with a key of the
    /// worker role, in place of the client's (the gateway has already checked the client); also used
    /// for the state poll of workers that do not push. Null: forward the client's key to those workers.
    /// Never sent to a worker that registered without the worker credential, and refused at start
    /// when it is also one of the gateway's own API keys.
    /// </summary>
    public string? WorkerKey { get; init; }
    /// <summary>
    /// Where registered workers may be: CIDRs (<c>10.0.0.0/8</c>, a bare IP), host names
    /// (<c>*.workers.svc.cluster.local</c>) or URL prefixes (<c>http://worker-0:8001</c>). Empty: anywhere.
    /// Configured workers (<see cref="Workers"/>) are not checked.
    /// </summary>
    public IReadOnlyList<string> WorkerAllowList { get; init; } = [];
    /// <summary>
    /// Adds <c>X-TuneGateway-Worker</c> (the serving worker's URL) to client responses: for debugging
    /// a pool only, since it tells every client the internal topology. Off by default.
    /// </summary>
    public bool ExposeWorkerHeader { get; init; }
    /// <summary>A registered worker that has not reported for this long leaves the pool.</summary>
    public TimeSpan StaleAfter { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>
    /// A worker not heard from for this long is shown as silent, not ready, in <c>/admin/workers</c>
    /// (2.5 of a worker's default 2-second heartbeats); it stays routable until <see cref="StaleAfter"/>
    /// or until a request to it fails.
    /// </summary>
    public TimeSpan SilentAfter { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>
    /// YARP's idle timeout per forwarded request (its default is 100 s); generous so that a long
    /// queue wait or prefill, or a long non-streaming generation, is not cut.
    /// </summary>
    public TimeSpan ActivityTimeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Workers one adapter spreads over when its workers are busy, unless all of them are overloaded.</summary>
    public int AdapterMaxWorkers { get; init; } = 2;
    /// <summary>Interval of the active health checks against each worker's <c>/readyz</c>.</summary>
    public TimeSpan HealthCheckInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A <c>/readyz</c> probe that takes longer than this counts as a failure.</summary>
    public TimeSpan HealthCheckTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How long a worker that failed requests (passive health) sits out before it is tried again.</summary>
    public TimeSpan ReactivationPeriod { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>How often stale workers are pruned and silent configured workers are polled.</summary>
    public TimeSpan PoolSweepInterval { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>How long a poll of a silent worker's <c>/internal/state</c> may take.</summary>
    public TimeSpan StatePollTimeout { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>How often aliases are re-read from the store, besides its change events.</summary>
    public TimeSpan AliasRefresh { get; init; } = TimeSpan.FromSeconds(1);
}
