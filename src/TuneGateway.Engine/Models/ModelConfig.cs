using System.Text.Json;

namespace TuneGateway.Engine.Models;

/// <summary>The decoder-only architectures the engine implements.</summary>
public enum ModelArchitecture
{
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Qwen3Moe,
    Mixtral,
    Gemma2,
    Gemma3,
    Phi3,
}

/// <summary>How rotary position embeddings are scaled.</summary>
public enum RopeType
{
    /// <summary>Plain RoPE: inv_freq = theta^(-2i/d).</summary>
    Default,

    /// <summary>Llama 3.1 frequency-dependent scaling (factor, low/high frequency factors).</summary>
    Llama3,

    /// <summary>Position interpolation: inv_freq / factor.</summary>
    Linear,

    /// <summary>
    /// Dynamic NTK: the base grows once a sequence passes max_position_embeddings. The engine
    /// never runs past max_position_embeddings, so within it this is plain RoPE, exactly.
    /// </summary>
    Dynamic,

    /// <summary>YaRN: interpolated low frequencies, extrapolated high ones, a ramp between, cos/sin scaled.</summary>
    Yarn,

    /// <summary>LongRoPE (Phi-3): per-frequency short and long factors, cos/sin scaled.</summary>
    LongRope,
}

/// <summary>RoPE parameters, read from either `rope_theta` + `rope_scaling` or `rope_parameters`.</summary>
public sealed record RopeParameters(
    double Theta,
    RopeType Type,
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192)
{
    /// <summary>Multiplies cos and sin (yarn's and longrope's attention factor); 1 for the other kinds.</summary>
    public double AttentionFactor { get; init; } = 1.0;
    /// <summary>yarn: rotations bounding the interpolation ramp (defaults 32 and 1).</summary>
    public double BetaFast { get; init; } = 32;
    public double BetaSlow { get; init; } = 1;
    /// <summary>yarn: round the ramp's bounds to whole dimensions (transformers' default).</summary>
    public bool Truncate { get; init; } = true;
    /// <summary>longrope: per-frequency divisors for positions below, and at or past, the original context.</summary>
    public IReadOnlyList<double>? ShortFactor { get; init; }
    public IReadOnlyList<double>? LongFactor { get; init; }
}

/// <summary>How a norm applies its weight.</summary>
public enum NormKind
{
    /// <summary>Llama: w · x̂, the normalised x cast to the model dtype first.</summary>
    Rms,

    /// <summary>Gemma: (1 + w) · x̂, computed in float32 and cast last.</summary>
    OffsetRms,
}

/// <summary>The activation of the gated MLP: act(gate) · up.</summary>
public enum Activation
{
    Silu,

    /// <summary>GELU with the tanh approximation (transformers' gelu_pytorch_tanh).</summary>
    GeluTanh,
}

/// <summary>
/// A top-k routed mixture of experts: softmax over <see cref="Experts"/> router logits, the
/// <see cref="TopK"/> largest kept (renormalised to sum 1 when <see cref="NormalizeTopK"/>), each
/// expert a gated MLP of <see cref="IntermediateSize"/>.
/// </summary>
public sealed record MoeConfig(int Experts, int TopK, bool NormalizeTopK, int IntermediateSize);

/// <summary>Whether a layer attends to every earlier token or only to the last window of them.</summary>
public enum AttentionKind
{
    Full,
    Sliding,
}

/// <summary>
/// The parts of a Hugging Face <c>config.json</c> (and <c>generation_config.json</c>) that the
/// engine needs. Both config forms are read: the classic one (<c>rope_theta</c>,
/// <c>rope_scaling</c>, <c>torch_dtype</c>) and the transformers &gt;= 5 one
/// (<c>rope_parameters</c>, <c>dtype</c>). Anything that would change the math and is not
/// implemented is rejected with a message naming the field.
/// </summary>
public sealed partial record ModelConfig
{
    public required ModelArchitecture Architecture { get; init; }
    public required string ModelType { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int VocabSize { get; init; }
    public required double RmsNormEps { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on q/k/v projections (always for Qwen2; `attention_bias` for Llama).</summary>
    public required bool QkvBias { get; init; }
    /// <summary>Bias on o_proj (Llama's `attention_bias` covers it too).</summary>
    public required bool OutputBias { get; init; }
    public required bool MlpBias { get; init; }
    public required RopeParameters Rope { get; init; }
    /// <summary>Sliding-window attention span of the sliding layers, or null for full attention everywhere.</summary>
    public int? SlidingWindow { get; init; }

    // The family's declaration: what differs between the decoder layers of the architectures.

    public NormKind Norm { get; init; } = NormKind.Rms;
    public Activation Activation { get; init; } = Activation.Silu;
    /// <summary>Per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3).</summary>
    public bool QkNorm { get; init; }
    /// <summary>Norms on the outputs of attention and MLP too, before the residual add (Gemma).</summary>
    public bool SandwichNorms { get; init; }
    /// <summary>One qkv_proj module instead of q_proj/k_proj/v_proj (Phi-3).</summary>
    public bool FusedQkv { get; init; }
    /// <summary>One gate_up_proj module instead of gate_proj/up_proj (Phi-3).</summary>
    public bool FusedGateUp { get; init; }
    /// <summary>Token embeddings multiplied by sqrt(hidden_size), rounded to the model dtype (Gemma).</summary>
    public bool ScaleEmbeddings { get; init; }
    /// <summary>Attention scores are q·k × this; null: 1/sqrt(head_dim). Gemma: query_pre_attn_scalar^-1/2.</summary>
    public double? AttentionScale { get; init; }
    /// <summary>Scores become cap·tanh(scores/cap) before the mask (Gemma 2).</summary>
    public double? AttentionSoftCap { get; init; }
    /// <summary>Logits become cap·tanh(logits/cap) (Gemma 2).</summary>
    public double? FinalLogitSoftCap { get; init; }
    /// <summary>Fraction of each head's dimensions that RoPE rotates (the first ones; Phi-3 partial rotary).</summary>
    public double PartialRotaryFactor { get; init; } = 1.0;
    /// <summary>Full or sliding attention per layer; null: every layer sliding when <see cref="SlidingWindow"/> is set.</summary>
    public IReadOnlyList<AttentionKind>? LayerTypes { get; init; }
    /// <summary>RoPE of the sliding layers when it differs from <see cref="Rope"/> (Gemma 3's local base).</summary>
    public RopeParameters? SlidingRope { get; init; }

    /// <summary>The mixture-of-experts block of the sparse layers, or null for a dense model.</summary>
    public MoeConfig? Moe { get; init; }
    /// <summary>Per layer: experts (true) or a dense MLP of <see cref="IntermediateSize"/>; null: every layer sparse when <see cref="Moe"/> is set.</summary>
    public IReadOnlyList<bool>? SparseLayers { get; init; }

    public bool IsSparse(int layer) => Moe is not null && (SparseLayers?[layer] ?? true);

    /// <summary>Dimensions of a head that RoPE rotates.</summary>
    public int RotaryDim => (int)(HeadDim * PartialRotaryFactor);

    public AttentionKind AttentionOf(int layer) =>
        LayerTypes?[layer] ?? (SlidingWindow is null ? AttentionKind.Full : AttentionKind.Sliding);

    /// <summary>The key span layer <paramref name="layer"/> attends to, or null for all earlier tokens.</summary>
    public int? WindowOf(int layer) => AttentionOf(layer) == AttentionKind.Sliding ? SlidingWindow : null;

    /// <summary>
    /// Set when a token's keys depend on how long its sequence was when they were computed, not
    /// just on its position: longrope switches from its short to its long factors once the
    /// sequence is longer than this (transformers decides per forward pass). Null otherwise.
    /// </summary>
    public int? KeyLengthThreshold =>
        Rope.Type == RopeType.LongRope ? Rope.OriginalMaxPositionEmbeddings
        : SlidingRope?.Type == RopeType.LongRope ? SlidingRope.OriginalMaxPositionEmbeddings
        : null;

    public RopeParameters RopeOf(int layer) =>
        AttentionOf(layer) == AttentionKind.Sliding && SlidingRope is not null ? SlidingRope : Rope;
    /// <summary>The checkpoint's declared dtype (`torch_dtype` or `dtype`), if any.</summary>
    public string? CheckpointDtype { get; init; }
    public int? BosTokenId { get; init; }
    /// <summary>End-of-sequence ids from config.json and generation_config.json, merged.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Query heads per key/value head.</summary>
    public int GroupSize => NumHeads / NumKeyValueHeads;

    public static ModelConfig FromDirectory(string modelDirectory)
    {
        string path = Path.Combine(modelDirectory, "config.json");
        if (!Directory.Exists(modelDirectory))
            throw new ModelLoadException($"Model directory '{modelDirectory}' does not exist.");
        if (!File.Exists(path))
            throw new ModelLoadException($"'{path}' is missing: a Hugging Face model directory needs config.json.");

        ModelConfig config;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            config = Parse(doc.RootElement, path);
        }
        catch (JsonException ex)
        {
            throw new ModelLoadException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }

        string generationPath = Path.Combine(modelDirectory, "generation_config.json");
        if (File.Exists(generationPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(generationPath));
                var eos = ReadIdList(doc.RootElement, "eos_token_id", generationPath);
                config = config with { EosTokenIds = config.EosTokenIds.Concat(eos).Distinct().ToArray() };
                if (config.BosTokenId is null && ReadOptionalInt(doc.RootElement, "bos_token_id", generationPath) is int bos)
                    config = config with { BosTokenId = bos };
            }
            catch (JsonException ex)
            {
                throw new ModelLoadException($"'{generationPath}' is not valid JSON: {ex.Message}", ex);
            }
        }
        return config;
    }

    private static IReadOnlyList<int> ReadIdList(JsonElement obj, string name, string path)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return [];
        return value.ValueKind switch
        {
            JsonValueKind.Number => [value.GetInt32()],
            JsonValueKind.Array => value.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Number
                ? v.GetInt32()
                : throw new ModelLoadException($"'{path}': field '{name}' must hold integers.")).ToArray(),
            _ => throw new ModelLoadException($"'{path}': field '{name}' must be an integer or a list of integers."),
        };
    }

    private static int ReadInt(JsonElement obj, string name, string path) =>
        ReadOptionalInt(obj, name, path) ?? throw new ModelLoadException($"'{path}': required field '{name}' is missing.");

    private static double ReadDouble(JsonElement obj, string name, string path, string parent) =>
        ReadOptionalDouble(obj, name, path) ?? throw new ModelLoadException($"'{path}': required field '{parent}.{name}' is missing.");

    private static int? ReadOptionalInt(JsonElement obj, string name, string path)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int result))
            throw new ModelLoadException($"'{path}': field '{name}' must be an integer, not {value.GetRawText()}.");
        return result;
    }

    private static double? ReadOptionalDouble(JsonElement obj, string name, string path)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Number)
            throw new ModelLoadException($"'{path}': field '{name}' must be a number, not {value.GetRawText()}.");
        return value.GetDouble();
    }

    private static bool? ReadOptionalBool(JsonElement obj, string name, string path)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelLoadException($"'{path}': field '{name}' must be true or false, not {value.GetRawText()}."),
        };
    }

    private static string? ReadOptionalString(JsonElement obj, string name, string path)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.String)
            throw new ModelLoadException($"'{path}': field '{name}' must be a string, not {value.GetRawText()}.");
        return value.GetString();
    }
}
