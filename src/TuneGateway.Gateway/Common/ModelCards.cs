namespace TuneGateway.Gateway.Common;

// The body of GET /v1/models: a worker lists its engine's models, the gateway what its workers
// report and its aliases, in the same shape (serialized with ServerJson.Options, snake_case).

/// <summary>
/// One entry of <c>GET /v1/models</c>, as vLLM lists the base model and its adapters, with what
/// this server adds: <see cref="Status"/>, one of <see cref="ModelStatus"/>.
/// </summary>
public sealed record ModelCard(string Id, string Object, long Created, string OwnedBy, string? Root, string? Parent, int? MaxModelLen, string? Status = null);

/// <summary>The <c>status</c> values of a model card.</summary>
public static class ModelStatus
{
    /// <summary>The base model.</summary>
    public const string Base = "base";
    /// <summary>An adapter whose weights are on the compute device (of some worker).</summary>
    public const string Resident = "resident";
    /// <summary>An adapter registered: in host memory, loading, or evicted to disk with its name kept.</summary>
    public const string Loaded = "loaded";
    /// <summary>An adapter under the adapter directories (<c>--lora-dir</c>, the artifact store) that loads on its first request.</summary>
    public const string Available = "available";
    /// <summary>An alias of the gateway, resolved per request to one of its versions.</summary>
    public const string Alias = "alias";
}

public sealed record ModelList(string Object, IReadOnlyList<ModelCard> Data);
