using System.Text.Json;

namespace TuneGateway.Engine.Models;

/// <summary>
/// The families: each is the common Llama-shaped reading of config.json plus a short
/// declaration of what its layers do differently, read the way transformers reads it.
/// </summary>
public sealed partial record ModelConfig
{
    private static readonly Dictionary<string, ModelArchitecture> Architectures = new(StringComparer.Ordinal)
    {
        ["LlamaForCausalLM"] = ModelArchitecture.Llama,
        ["MistralForCausalLM"] = ModelArchitecture.Mistral,
        ["Qwen2ForCausalLM"] = ModelArchitecture.Qwen2,
        ["Qwen3ForCausalLM"] = ModelArchitecture.Qwen3,
        ["Qwen3MoeForCausalLM"] = ModelArchitecture.Qwen3Moe,
        ["MixtralForCausalLM"] = ModelArchitecture.Mixtral,
        ["Gemma2ForCausalLM"] = ModelArchitecture.Gemma2,
        ["Gemma3ForCausalLM"] = ModelArchitecture.Gemma3,
        ["Phi3ForCausalLM"] = ModelArchitecture.Phi3,
    };

    private static readonly Dictionary<string, string> ModelTypes = new(StringComparer.Ordinal)
    {
        ["llama"] = "LlamaForCausalLM",
        ["mistral"] = "MistralForCausalLM",
        ["qwen2"] = "Qwen2ForCausalLM",
        ["qwen3"] = "Qwen3ForCausalLM",
        ["qwen3_moe"] = "Qwen3MoeForCausalLM",
        ["mixtral"] = "MixtralForCausalLM",
        ["gemma2"] = "Gemma2ForCausalLM",
        ["gemma3_text"] = "Gemma3ForCausalLM",
        ["phi3"] = "Phi3ForCausalLM",
    };

    public static ModelConfig Parse(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"'{path}': expected a JSON object.");

        if (root.TryGetProperty("quantization_config", out var quant) && quant.ValueKind != JsonValueKind.Null)
        {
            string method = quant.ValueKind == JsonValueKind.Object && quant.TryGetProperty("quant_method", out var m) ? m.ToString() : "unknown";
            throw new ModelLoadException($"'{path}': field 'quantization_config' ({method}): quantized checkpoints are not supported; use a float32, float16 or bfloat16 checkpoint.");
        }

        var architecture = ReadArchitecture(root, path);
        string modelType = ReadOptionalString(root, "model_type", path) ?? architecture.ToString().ToLowerInvariant();
        bool gemma = architecture is ModelArchitecture.Gemma2 or ModelArchitecture.Gemma3;

        int hidden = ReadInt(root, "hidden_size", path);
        int heads = ReadInt(root, "num_attention_heads", path);
        int kvHeads = ReadOptionalInt(root, "num_key_value_heads", path) ?? heads;
        int headDim = ReadOptionalInt(root, "head_dim", path) ?? hidden / heads;
        int layers = ReadInt(root, "num_hidden_layers", path);
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw new ModelLoadException($"'{path}': field 'num_key_value_heads' ({kvHeads}) must divide 'num_attention_heads' ({heads}).");
        if (ReadOptionalInt(root, "head_dim", path) is null && hidden % heads != 0)
            throw new ModelLoadException($"'{path}': 'hidden_size' ({hidden}) is not a multiple of 'num_attention_heads' ({heads}) and no 'head_dim' is given.");
        if (headDim % 2 != 0)
            throw new ModelLoadException($"'{path}': field 'head_dim' ({headDim}) must be even for rotary embeddings.");
        if (ReadOptionalInt(root, "pretraining_tp", path) is int tp && tp != 1)
            throw new ModelLoadException($"'{path}': field 'pretraining_tp' is {tp}; only 1 is supported.");

        var activation = ReadActivation(root, path, gemma);
        bool attentionBias = ReadOptionalBool(root, "attention_bias", path) ?? false;
        int maxPositions = ReadOptionalInt(root, "max_position_embeddings", path) ?? 2048;

        double partialRotary = ReadPartialRotary(root, path);
        if (partialRotary != 1.0 && architecture != ModelArchitecture.Phi3)
            throw new ModelLoadException($"'{path}': field 'partial_rotary_factor' is {partialRotary}; partial rotary embeddings are supported for Phi3ForCausalLM only.");

        var (rope, slidingRope) = ReadRopes(root, path, architecture, maxPositions, (int)(headDim * partialRotary));

        var config = new ModelConfig
        {
            Architecture = architecture,
            ModelType = modelType,
            HiddenSize = hidden,
            IntermediateSize = ReadOptionalInt(root, "intermediate_size", path) ?? 0,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = ReadInt(root, "vocab_size", path),
            RmsNormEps = ReadOptionalDouble(root, "rms_norm_eps", path) ?? 1e-6,
            MaxPositionEmbeddings = maxPositions,
            // Gemma ties its head to the embeddings unless told otherwise; the others do not.
            TieWordEmbeddings = ReadOptionalBool(root, "tie_word_embeddings", path) ?? gemma,
            QkvBias = attentionBias,
            OutputBias = attentionBias,
            MlpBias = ReadOptionalBool(root, "mlp_bias", path) ?? false,
            Rope = rope,
            SlidingRope = slidingRope,
            Activation = activation,
            PartialRotaryFactor = partialRotary,
            CheckpointDtype = ReadOptionalString(root, "dtype", path) ?? ReadOptionalString(root, "torch_dtype", path),
            BosTokenId = ReadOptionalInt(root, "bos_token_id", path),
            EosTokenIds = ReadIdList(root, "eos_token_id", path),
        };

        config = architecture switch
        {
            ModelArchitecture.Llama => config,
            // transformers builds Mistral's, Mixtral's and Phi-3's projections without biases whatever attention_bias says.
            ModelArchitecture.Mistral => config with { QkvBias = false, OutputBias = false, SlidingWindow = ReadOptionalInt(root, "sliding_window", path) },
            ModelArchitecture.Qwen2 => QwenWindows(config with { QkvBias = true, OutputBias = false }, root, path),
            ModelArchitecture.Qwen3 => QwenWindows(config with { QkNorm = true }, root, path),
            ModelArchitecture.Qwen3Moe => Qwen3Moe(QwenWindows(config with { QkNorm = true }, root, path), root, path),
            ModelArchitecture.Mixtral => Mixtral(config with { QkvBias = false, OutputBias = false }, root, path),
            ModelArchitecture.Gemma2 => Gemma(config, root, path),
            ModelArchitecture.Gemma3 => Gemma(config with { QkNorm = true }, root, path),
            ModelArchitecture.Phi3 => config with
            {
                FusedQkv = true,
                FusedGateUp = true,
                QkvBias = false,
                OutputBias = false,
                SlidingWindow = ReadOptionalInt(root, "sliding_window", path),
            },
            _ => config,
        };

        if (config.Moe is null && config.IntermediateSize <= 0)
            throw new ModelLoadException($"'{path}': required field 'intermediate_size' is missing.");
        if (config.SlidingWindow is <= 0)
            throw new ModelLoadException($"'{path}': field 'sliding_window' ({config.SlidingWindow}) must be positive.");
        return config with { LayerTypes = ReadLayerTypes(root, path, config) };
    }

    private static ModelArchitecture ReadArchitecture(JsonElement root, string path)
    {
        string? name = null;
        if (root.TryGetProperty("architectures", out var archs) && archs.ValueKind == JsonValueKind.Array && archs.GetArrayLength() > 0)
            name = archs[0].GetString();
        if (name is null && ReadOptionalString(root, "model_type", path) is string type)
            name = ModelTypes.GetValueOrDefault(type, type);
        if (name is null)
            throw new ModelLoadException($"'{path}': neither 'architectures' nor 'model_type' names the architecture.");
        if (Architectures.TryGetValue(name, out var architecture)) return architecture;
        string hint = name == "Gemma3ForConditionalGeneration"
            ? " (the multimodal Gemma 3; serve its text model: a Gemma3ForCausalLM checkpoint)"
            : "";
        throw new ModelLoadException($"'{path}': field 'architectures' is '{name}'{hint}; supported: {string.Join(", ", Architectures.Keys)}.");
    }

    private static Activation ReadActivation(JsonElement root, string path, bool gemma)
    {
        // Gemma names the field hidden_activation (hidden_act is the legacy, ignored one).
        string field = gemma && root.TryGetProperty("hidden_activation", out var ha) && ha.ValueKind != JsonValueKind.Null ? "hidden_activation" : "hidden_act";
        string act = ReadOptionalString(root, field, path) ?? (gemma ? "gelu_pytorch_tanh" : "silu");
        return act switch
        {
            "silu" or "swish" => Activation.Silu,
            "gelu_pytorch_tanh" or "gelu_tanh" => Activation.GeluTanh,
            _ => throw new ModelLoadException($"'{path}': field '{field}' is '{act}'; supported: silu, gelu_pytorch_tanh."),
        };
    }

    /// <summary>Qwen2/Qwen3: sliding layers only with use_sliding_window, from max_window_layers on.</summary>
    private static ModelConfig QwenWindows(ModelConfig config, JsonElement root, string path)
    {
        if (ReadOptionalBool(root, "use_sliding_window", path) != true) return config;
        int window = ReadOptionalInt(root, "sliding_window", path)
            ?? throw new ModelLoadException($"'{path}': field 'use_sliding_window' is true but 'sliding_window' is missing.");
        int firstSliding = ReadOptionalInt(root, "max_window_layers", path) ?? config.NumLayers;
        return config with
        {
            SlidingWindow = window,
            LayerTypes = Enumerable.Range(0, config.NumLayers).Select(i => i >= firstSliding ? AttentionKind.Sliding : AttentionKind.Full).ToArray(),
        };
    }

    private static ModelConfig Qwen3Moe(ModelConfig config, JsonElement root, string path)
    {
        if (ReadOptionalInt(root, "shared_expert_intermediate_size", path) is int shared && shared > 0)
            throw new ModelLoadException($"'{path}': field 'shared_expert_intermediate_size' is {shared}; Qwen3MoeForCausalLM has no shared expert, and this checkpoint's one is not supported.");
        int experts = ReadInt(root, "num_experts", path);
        int step = ReadOptionalInt(root, "decoder_sparse_step", path) ?? 1;
        if (step <= 0) throw new ModelLoadException($"'{path}': field 'decoder_sparse_step' ({step}) must be positive.");
        var denseLayers = ReadIntList(root, "mlp_only_layers", path).ToHashSet();
        return config with
        {
            Moe = new MoeConfig(experts, ReadInt(root, "num_experts_per_tok", path),
                ReadOptionalBool(root, "norm_topk_prob", path) ?? false, ReadInt(root, "moe_intermediate_size", path)),
            SparseLayers = Enumerable.Range(0, config.NumLayers)
                .Select(i => !denseLayers.Contains(i) && experts > 0 && (i + 1) % step == 0).ToArray(),
        };
    }

    private static ModelConfig Mixtral(ModelConfig config, JsonElement root, string path) => config with
    {
        // Mixtral always renormalises the top-k weights.
        Moe = new MoeConfig(ReadInt(root, "num_local_experts", path), ReadInt(root, "num_experts_per_tok", path), true, config.IntermediateSize),
        SlidingWindow = ReadOptionalInt(root, "sliding_window", path),
    };

    /// <summary>Gemma 2 and 3: (1+w) norms around both halves, scaled embeddings, query_pre_attn_scalar, windows.</summary>
    /// <remarks>Gemma 2 sets both soft-caps; Gemma 3 normally sets neither, and honours them if a config does.</remarks>
    private static ModelConfig Gemma(ModelConfig config, JsonElement root, string path)
    {
        double queryScalar = ReadOptionalDouble(root, "query_pre_attn_scalar", path) ?? config.HeadDim;
        if (queryScalar <= 0) throw new ModelLoadException($"'{path}': field 'query_pre_attn_scalar' ({queryScalar}) must be positive.");
        double? attentionCap = ReadOptionalDouble(root, "attn_logit_softcapping", path);
        double? finalCap = ReadOptionalDouble(root, "final_logit_softcapping", path);
        if (attentionCap is <= 0 || finalCap is <= 0)
            throw new ModelLoadException($"'{path}': soft-capping values ('attn_logit_softcapping', 'final_logit_softcapping') must be positive or null.");
        return config with
        {
            Norm = NormKind.OffsetRms,
            SandwichNorms = true,
            ScaleEmbeddings = true,
            AttentionScale = 1.0 / Math.Sqrt(queryScalar),
            AttentionSoftCap = attentionCap,
            FinalLogitSoftCap = finalCap,
            SlidingWindow = ReadOptionalInt(root, "sliding_window", path),
        };
    }

    /// <summary>
    /// layer_types (transformers 5) when present; otherwise the family's older rule: Gemma 2
    /// alternates sliding and full from layer 0, Gemma 3 has every sliding_window_pattern-th
    /// layer full; Qwen keeps what <see cref="QwenWindows"/> decided; the rest slide everywhere
    /// when a window is set.
    /// </summary>
    private static IReadOnlyList<AttentionKind>? ReadLayerTypes(JsonElement root, string path, ModelConfig config)
    {
        if (root.TryGetProperty("layer_types", out var types) && types.ValueKind == JsonValueKind.Array)
        {
            if (types.GetArrayLength() != config.NumLayers)
                throw new ModelLoadException($"'{path}': field 'layer_types' has {types.GetArrayLength()} entries for {config.NumLayers} layers.");
            var kinds = types.EnumerateArray().Select(t => t.GetString() switch
            {
                "full_attention" => AttentionKind.Full,
                // A sliding layer without a window attends everywhere, as in transformers.
                "sliding_attention" => config.SlidingWindow is null ? AttentionKind.Full : AttentionKind.Sliding,
                var other => throw new ModelLoadException($"'{path}': field 'layer_types' holds '{other}'; supported: full_attention, sliding_attention."),
            }).ToArray();
            // Qwen's use_sliding_window: false wins over layer_types, as transformers reads it.
            if ((config.Architecture is ModelArchitecture.Qwen2 or ModelArchitecture.Qwen3 or ModelArchitecture.Qwen3Moe) && config.SlidingWindow is null)
                return null;
            return kinds;
        }
        if (config.SlidingWindow is null) return null;
        return config.Architecture switch
        {
            ModelArchitecture.Gemma2 => Enumerable.Range(0, config.NumLayers).Select(i => i % 2 == 0 ? AttentionKind.Sliding : AttentionKind.Full).ToArray(),
            ModelArchitecture.Gemma3 => Gemma3Pattern(root, path, config.NumLayers),
            _ => config.LayerTypes,
        };
    }

    private static AttentionKind[] Gemma3Pattern(JsonElement root, string path, int layers)
    {
        int pattern = ReadOptionalInt(root, "sliding_window_pattern", path) ?? 6;
        if (pattern <= 0) throw new ModelLoadException($"'{path}': field 'sliding_window_pattern' ({pattern}) must be positive.");
        return Enumerable.Range(0, layers).Select(i => (i + 1) % pattern != 0 ? AttentionKind.Sliding : AttentionKind.Full).ToArray();
    }

    private static double ReadPartialRotary(JsonElement root, string path)
    {
        double? nested = root.TryGetProperty("rope_parameters", out var parameters) && parameters.ValueKind == JsonValueKind.Object
            ? ReadOptionalDouble(parameters, "partial_rotary_factor", path)
            : null;
        double factor = nested ?? ReadOptionalDouble(root, "partial_rotary_factor", path) ?? 1.0;
        if (factor is <= 0 or > 1)
            throw new ModelLoadException($"'{path}': field 'partial_rotary_factor' ({factor}) must be in (0, 1].");
        return factor;
    }

    /// <summary>
    /// RoPE for the (global) layers and, for Gemma 3, the sliding layers. transformers 5 keeps
    /// everything under rope_parameters (per layer type for Gemma 3); the classic form has
    /// rope_theta + rope_scaling (+ rope_local_base_freq for Gemma 3's local layers).
    /// </summary>
    private static (RopeParameters Global, RopeParameters? Sliding) ReadRopes(JsonElement root, string path, ModelArchitecture architecture,
        int maxPositions, int rotaryDim)
    {
        int? originalTop = ReadOptionalInt(root, "original_max_position_embeddings", path);
        RopeParameters Read(JsonElement obj, double theta, string field) =>
            ReadRopeScaling(obj, theta, path, field, maxPositions, originalTop, rotaryDim);

        if (root.TryGetProperty("rope_parameters", out var parameters) && parameters.ValueKind == JsonValueKind.Object)
        {
            if (parameters.TryGetProperty("full_attention", out var full) && full.ValueKind == JsonValueKind.Object)
            {
                var global = Read(full, ReadOptionalDouble(full, "rope_theta", path) ?? 10000.0, "rope_parameters.full_attention");
                RopeParameters? local = parameters.TryGetProperty("sliding_attention", out var sliding) && sliding.ValueKind == JsonValueKind.Object
                    ? Read(sliding, ReadOptionalDouble(sliding, "rope_theta", path) ?? 10000.0, "rope_parameters.sliding_attention")
                    : null;
                return (global, local);
            }
            double theta = ReadOptionalDouble(parameters, "rope_theta", path) ?? ReadOptionalDouble(root, "rope_theta", path) ?? 10000.0;
            return (Read(parameters, theta, "rope_parameters"), LocalRope(root, path, architecture));
        }

        double classicTheta = ReadOptionalDouble(root, "rope_theta", path) ?? 10000.0;
        RopeParameters rope;
        if (root.TryGetProperty("rope_scaling", out var scaling) && scaling.ValueKind == JsonValueKind.Object)
            rope = Read(scaling, classicTheta, "rope_scaling");
        else if (root.TryGetProperty("rope_scaling", out scaling) && scaling.ValueKind != JsonValueKind.Null)
            throw new ModelLoadException($"'{path}': field 'rope_scaling' must be an object or null.");
        else
            rope = new RopeParameters(classicTheta, RopeType.Default);
        return (rope, LocalRope(root, path, architecture));
    }

    /// <summary>Gemma 3's classic form: the local layers use plain RoPE with rope_local_base_freq.</summary>
    private static RopeParameters? LocalRope(JsonElement root, string path, ModelArchitecture architecture) =>
        architecture == ModelArchitecture.Gemma3
            ? new RopeParameters(ReadOptionalDouble(root, "rope_local_base_freq", path) ?? 10000.0, RopeType.Default)
            : null;

    private static RopeParameters ReadRopeScaling(JsonElement scaling, double theta, string path, string field,
        int maxPositions, int? originalTop, int rotaryDim)
    {
        string type = ReadOptionalString(scaling, "rope_type", path) ?? ReadOptionalString(scaling, "type", path) ?? "default";
        int Original() => ReadOptionalInt(scaling, "original_max_position_embeddings", path) ?? originalTop ?? maxPositions;
        double Factor() => ReadDouble(scaling, "factor", path, field);
        switch (type)
        {
            case "default":
                return new RopeParameters(theta, RopeType.Default);
            case "linear":
                return new RopeParameters(theta, RopeType.Linear, Factor: Factor());
            case "dynamic":
                return new RopeParameters(theta, RopeType.Dynamic, Factor: Factor());
            case "llama3":
                return new RopeParameters(
                    theta,
                    RopeType.Llama3,
                    Factor: Factor(),
                    LowFreqFactor: ReadDouble(scaling, "low_freq_factor", path, field),
                    HighFreqFactor: ReadDouble(scaling, "high_freq_factor", path, field),
                    OriginalMaxPositionEmbeddings: (int)ReadDouble(scaling, "original_max_position_embeddings", path, field));
            case "yarn":
            {
                double factor = Factor();
                double mscale = ReadOptionalDouble(scaling, "mscale", path) ?? 0, mscaleAllDim = ReadOptionalDouble(scaling, "mscale_all_dim", path) ?? 0;
                static double MScale(double scale, double m) => scale <= 1 ? 1.0 : 0.1 * m * Math.Log(scale) + 1.0;
                double attention = ReadOptionalDouble(scaling, "attention_factor", path)
                    ?? (mscale != 0 && mscaleAllDim != 0 ? MScale(factor, mscale) / MScale(factor, mscaleAllDim) : MScale(factor, 1));
                return new RopeParameters(theta, RopeType.Yarn, Factor: factor, OriginalMaxPositionEmbeddings: Original())
                {
                    AttentionFactor = attention,
                    BetaFast = ReadOptionalDouble(scaling, "beta_fast", path) ?? 32,
                    BetaSlow = ReadOptionalDouble(scaling, "beta_slow", path) ?? 1,
                    Truncate = ReadOptionalBool(scaling, "truncate", path) ?? true,
                };
            }
            case "longrope" or "su":
            {
                int original = Original();
                double factor = ReadOptionalDouble(scaling, "factor", path) ?? (double)maxPositions / original;
                double attention = ReadOptionalDouble(scaling, "attention_factor", path)
                    ?? (factor <= 1.0 ? 1.0 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(original)));
                IReadOnlyList<double> Factors(string name)
                {
                    var values = ReadDoubleList(scaling, name, path, field);
                    if (values.Count != rotaryDim / 2)
                        throw new ModelLoadException($"'{path}': field '{field}.{name}' has {values.Count} entries; the rotary dimension {rotaryDim} needs {rotaryDim / 2}.");
                    return values;
                }
                return new RopeParameters(theta, RopeType.LongRope, Factor: factor, OriginalMaxPositionEmbeddings: original)
                {
                    AttentionFactor = attention,
                    ShortFactor = Factors("short_factor"),
                    LongFactor = Factors("long_factor"),
                };
            }
            default:
                throw new ModelLoadException($"'{path}': field '{field}.rope_type' is '{type}'; supported: default, linear, dynamic, llama3, yarn, longrope.");
        }
    }

    private static IReadOnlyList<double> ReadDoubleList(JsonElement obj, string name, string path, string parent)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.Array)
            throw new ModelLoadException($"'{path}': required field '{parent}.{name}' (a list of numbers) is missing.");
        return value.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Number
            ? v.GetDouble()
            : throw new ModelLoadException($"'{path}': field '{parent}.{name}' must hold numbers.")).ToArray();
    }

    private static IReadOnlyList<int> ReadIntList(JsonElement obj, string name, string path) => ReadIdList(obj, name, path);
}
