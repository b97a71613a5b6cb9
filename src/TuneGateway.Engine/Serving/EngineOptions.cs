using TuneGateway.Engine.Lora;

namespace TuneGateway.Engine.Serving;

/// <summary>Everything needed to start an <see cref="InferenceEngine"/>; the CLI maps its flags onto it.</summary>
public sealed record EngineOptions
{
    public required string ModelDirectory { get; init; }
    /// <summary>The model id clients use (default: the model directory's name).</summary>
    public string? ServedModelName { get; init; }
    public string Device { get; init; } = "auto";
    public string Dtype { get; init; } = "auto";
    /// <summary>Longest prompt + completion (default: max_position_embeddings, at most 4096).</summary>
    public int? MaxModelLen { get; init; }
    public int MaxNumSeqs { get; init; } = 32;
    public int MaxBatchTokens { get; init; } = 2048;
    public int MaxQueue { get; init; } = 256;
    /// <summary>Upper bound on KV cache bytes; fewer sequences run at once if the slots would not fit.</summary>
    public long? KvCacheMemory { get; init; }
    public AdapterManagerOptions Adapters { get; init; } = new();
    /// <summary>Adapters to load at start, name to directory.</summary>
    public IReadOnlyDictionary<string, string> Loras { get; init; } = new Dictionary<string, string>();
    /// <summary>A Jinja chat template file that replaces the model's own.</summary>
    public string? ChatTemplatePath { get; init; }
    /// <summary>Bounds of constrained decoding (response_format, tool calls).</summary>
    public Structured.StructuredOutputOptions StructuredOutputs { get; init; } = new();
    /// <summary>
    /// How tool calls are read from chat outputs (<c>--tool-call-parser</c>: hermes, llama3_json,
    /// mistral); null: tool_choice auto is refused. Read by the server's chat endpoint.
    /// </summary>
    public string? ToolCallParser { get; init; }
}
