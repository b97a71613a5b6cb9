namespace TuneGateway.Gateway.Common;

/// <summary>
/// What a worker tells the gateway about itself (<c>POST /internal/workers</c>), on every change
/// and as a heartbeat, and what <c>GET /internal/state</c> answers: enough for the gateway to
/// route by base model, adapter residency and load.
/// </summary>
public sealed record WorkerState
{
    /// <summary>Stable id of the worker process (the gateway's destination id).</summary>
    public required string WorkerId { get; init; }
    /// <summary>Base URL the gateway forwards to, e.g. <c>http://10.0.0.5:8001</c>.</summary>
    public required string Url { get; init; }
    /// <summary>The served base model's id; empty while the model is loading.</summary>
    public string BaseModel { get; init; } = "";
    public bool Ready { get; init; }
    /// <summary>Longest prompt + completion the worker accepts.</summary>
    public int MaxModelLen { get; init; }
    /// <summary>Adapters whose weights are on the compute device now.</summary>
    public IReadOnlyList<string> ResidentAdapters { get; init; } = [];
    /// <summary>Every adapter name the worker has registered (device, host memory or still on disk).</summary>
    public IReadOnlyList<string> LoadedAdapters { get; init; } = [];
    /// <summary>Adapters under its adapter directories that it would load on their first request (not loaded yet).</summary>
    public IReadOnlyList<string> AvailableAdapters { get; init; } = [];
    public int FreeAdapterSlots { get; init; }
    public int MaxLoras { get; init; }
    /// <summary>Requests waiting for a batch slot.</summary>
    public int QueueDepth { get; init; }
    /// <summary>Sequences in the running batch.</summary>
    public int Running { get; init; }
    /// <summary>Batch slots (sequences that can run at once).</summary>
    public int Slots { get; init; }
    /// <summary>Share of the KV cache in use, 0 to 1.</summary>
    public double KvCacheUsage { get; init; }
    public DateTimeOffset Timestamp { get; init; } = DateTimeOffset.UtcNow;
}
