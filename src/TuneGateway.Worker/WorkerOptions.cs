using TuneGateway.Engine.Serving;

namespace TuneGateway.Worker;

/// <summary>How a worker runs: its engine, where it is reachable, and the gateway it reports to.</summary>
public sealed record WorkerOptions
{
    public required EngineOptions Engine { get; init; }
    /// <summary>Id reported to the gateway (default: host name and port).</summary>
    public string? WorkerId { get; init; }
    /// <summary>Gateway to push state to (<c>POST {gateway}/internal/workers</c>); null for none.</summary>
    public string? GatewayUrl { get; init; }
    /// <summary>A key of the gateway's worker role, presented when pushing state.</summary>
    public string? GatewayKey { get; init; }
    /// <summary>The URL the gateway should forward to (default: the first listening address).</summary>
    public string? AdvertiseUrl { get; init; }
    /// <summary>State is re-sent at least this often, even without a change.</summary>
    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>Path prefix the worker API is mapped under ("" standalone; "/_worker" inside serve).</summary>
    public string PathPrefix { get; init; } = "";
}
