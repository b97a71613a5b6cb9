using TuneGateway.Engine.Inference.Paging;
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
    /// <summary>KV cache bytes (default: what <see cref="MaxNumSeqs"/> sequences of the full context need).</summary>
    public long? KvCacheMemory { get; init; }
    /// <summary>KV cache as a share of the device's free memory after the weights load (instead of <see cref="KvCacheMemory"/>).</summary>
    public double? KvCacheMemoryFraction { get; init; }
    /// <summary>Tokens per KV cache block.</summary>
    public int BlockSize { get; init; } = PagedKvCache.DefaultBlockSize;
    /// <summary>Reuse cached KV blocks of prompt prefixes computed under the same adapter version.</summary>
    public bool PrefixCaching { get; init; } = true;
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
