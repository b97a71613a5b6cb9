using System.Text.Json;
using System.Text.RegularExpressions;

namespace TuneGateway.Engine.Lora;

/// <summary>
/// A PEFT <c>adapter_config.json</c> for a LoRA adapter, with PEFT's rules for which modules are
/// targeted and with what rank and alpha. Fields that would change the math and are not
/// implemented (DoRA, biases, fan-in/fan-out weights, ...) are rejected with a message naming them.
/// </summary>
public sealed record LoraConfig
{
    public required int Rank { get; init; }
    public required double Alpha { get; init; }
    public bool UseRsLora { get; init; }
    /// <summary>Module-name suffixes, or null when <see cref="TargetRegex"/> is used.</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }
    /// <summary>A regular expression that must match the whole module name.</summary>
    public string? TargetRegex { get; init; }
    public IReadOnlyList<string>? ExcludeModules { get; init; }
    public string? ExcludeRegex { get; init; }
    /// <summary>Ordered (pattern, rank) pairs; the first pattern that matches wins.</summary>
    public IReadOnlyList<KeyValuePair<string, int>> RankPattern { get; init; } = [];
    public IReadOnlyList<KeyValuePair<string, double>> AlphaPattern { get; init; } = [];
    public IReadOnlyList<int>? LayersToTransform { get; init; }
    public IReadOnlyList<string>? LayersPattern { get; init; }
    public string? BaseModelNameOrPath { get; init; }

    private static readonly string[] DefaultLayerPatterns = ["layers", "h", "blocks", "layer"];

    public static LoraConfig FromFile(string path)
    {
        if (!File.Exists(path)) throw new AdapterLoadException($"'{path}' is missing: a PEFT adapter directory needs adapter_config.json.");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return Parse(doc.RootElement, path);
        }
        catch (JsonException ex)
        {
            throw new AdapterLoadException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }
    }

    public static LoraConfig Parse(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new AdapterLoadException($"'{path}': expected a JSON object.");

        string peftType = String(root, "peft_type") ?? "LORA";
        if (!peftType.Equals("LORA", StringComparison.OrdinalIgnoreCase))
            throw new AdapterLoadException($"'{path}': field 'peft_type' is '{peftType}'; only LORA adapters are supported.");

        Reject(root, path, "use_dora", v => v.ValueKind == JsonValueKind.True, "DoRA adapters are not supported");
        Reject(root, path, "bias", v => v.ValueKind == JsonValueKind.String && v.GetString() != "none", "only bias \"none\" is supported");
        Reject(root, path, "lora_bias", v => v.ValueKind == JsonValueKind.True, "LoRA bias terms are not supported");
        Reject(root, path, "fan_in_fan_out", v => v.ValueKind == JsonValueKind.True, "fan_in_fan_out (Conv1D-style weights) is not supported");
        Reject(root, path, "use_qalora", v => v.ValueKind == JsonValueKind.True, "QA-LoRA is not supported");
        Reject(root, path, "use_bdlora", v => v.ValueKind is not (JsonValueKind.Null or JsonValueKind.False), "block-diagonal LoRA is not supported");
        Reject(root, path, "alora_invocation_tokens", v => v.ValueKind != JsonValueKind.Null, "activated LoRA (aLoRA) is not supported");
        Reject(root, path, "layer_replication", v => v.ValueKind != JsonValueKind.Null, "layer replication is not supported");
        Reject(root, path, "target_parameters", v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0, "LoRA on parameters (target_parameters) is not supported");
        Reject(root, path, "trainable_token_indices", v => v.ValueKind != JsonValueKind.Null, "trainable token indices are not supported");
        Reject(root, path, "megatron_config", v => v.ValueKind != JsonValueKind.Null, "Megatron-parallel adapters are not supported");

        int rank = Int(root, "r", path) ?? 8;
        if (rank <= 0) throw new AdapterLoadException($"'{path}': field 'r' must be positive, not {rank}.");
        var config = new LoraConfig
        {
            Rank = rank,
            Alpha = Number(root, "lora_alpha", path) ?? 8,
            UseRsLora = root.TryGetProperty("use_rslora", out var rs) && rs.ValueKind == JsonValueKind.True,
            BaseModelNameOrPath = String(root, "base_model_name_or_path"),
        };

        config = ReadTargets(root, path, config);
        config = config with
        {
            RankPattern = Patterns(root, "rank_pattern", path, v => v.TryGetInt32(out int r) && r > 0 ? r : throw new AdapterLoadException($"'{path}': 'rank_pattern' values must be positive integers.")),
            AlphaPattern = Patterns(root, "alpha_pattern", path, v => v.GetDouble()),
            LayersToTransform = LayerList(root, path),
            LayersPattern = StringOrList(root, "layers_pattern", path),
        };
        foreach (var (pattern, _) in config.RankPattern.Concat(config.AlphaPattern.Select(p => new KeyValuePair<string, int>(p.Key, 0))))
        {
            try { _ = new Regex(pattern); }
            catch (ArgumentException ex) { throw new AdapterLoadException($"'{path}': pattern '{pattern}' is not a valid regular expression: {ex.Message}"); }
        }
        return config;
    }

    private static LoraConfig ReadTargets(JsonElement root, string path, LoraConfig config)
    {
        if (!root.TryGetProperty("target_modules", out var targets) || targets.ValueKind == JsonValueKind.Null)
            throw new AdapterLoadException($"'{path}': field 'target_modules' is missing.");
        config = targets.ValueKind switch
        {
            JsonValueKind.String when targets.GetString() == "all-linear" =>
                config with { TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] },
            JsonValueKind.String => config with { TargetRegex = CheckRegex(targets.GetString()!, path, "target_modules") },
            JsonValueKind.Array => config with { TargetModules = targets.EnumerateArray().Select(t => t.GetString() ?? "").ToArray() },
            _ => throw new AdapterLoadException($"'{path}': field 'target_modules' must be a list of names or a regular expression."),
        };
        if (root.TryGetProperty("exclude_modules", out var exclude))
        {
            config = exclude.ValueKind switch
            {
                JsonValueKind.Null => config,
                JsonValueKind.String => config with { ExcludeRegex = CheckRegex(exclude.GetString()!, path, "exclude_modules") },
                JsonValueKind.Array => config with { ExcludeModules = exclude.EnumerateArray().Select(t => t.GetString() ?? "").ToArray() },
                _ => throw new AdapterLoadException($"'{path}': field 'exclude_modules' must be a list of names or a regular expression."),
            };
        }
        return config;
    }

    /// <summary>PEFT's rule: a regex must match the whole name; a name list matches equal names or dotted suffixes.</summary>
    public bool Targets(string modulePath, int layer)
    {
        if (IsExcluded(modulePath)) return false;
        if (TargetRegex is not null) return Regex.IsMatch(modulePath, $"^(?:{TargetRegex})$");
        bool found = TargetModules!.Any(t => modulePath == t || modulePath.EndsWith("." + t, StringComparison.Ordinal));
        if (!found || LayersToTransform is not { Count: > 0 } layers) return found;
        return layers.Contains(LayerIndex(modulePath) ?? layer);
    }

    private bool IsExcluded(string modulePath)
    {
        if (ExcludeRegex is not null) return Regex.IsMatch(modulePath, $"^(?:{ExcludeRegex})$");
        return ExcludeModules?.Any(t => modulePath == t || modulePath.EndsWith("." + t, StringComparison.Ordinal)) ?? false;
    }

    private int? LayerIndex(string modulePath)
    {
        foreach (string pattern in LayersPattern ?? DefaultLayerPatterns)
        {
            var match = Regex.Match(modulePath, $@"^.*\.{pattern}\.(\d+)\.");
            if (match.Success) return int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        return null;
    }

    /// <summary>The rank PEFT gives a module: the first matching rank_pattern entry, else r.</summary>
    public int RankFor(string modulePath) => Match(RankPattern, modulePath) ?? Rank;

    public double AlphaFor(string modulePath) => Match(AlphaPattern, modulePath) ?? Alpha;

    /// <summary>alpha/r, or alpha/sqrt(r) with rsLoRA.</summary>
    public double ScaleFor(string modulePath)
    {
        int r = RankFor(modulePath);
        return AlphaFor(modulePath) / (UseRsLora ? Math.Sqrt(r) : r);
    }

    private static T? Match<T>(IReadOnlyList<KeyValuePair<string, T>> patterns, string modulePath) where T : struct
    {
        foreach (var (pattern, value) in patterns)
        {
            if (Regex.IsMatch(modulePath, $@"^(?:.*\.)?(?:{pattern})$")) return value;
        }
        return null;
    }

    private static void Reject(JsonElement root, string path, string field, Func<JsonElement, bool> unsupported, string why)
    {
        if (root.TryGetProperty(field, out var value) && unsupported(value))
            throw new AdapterLoadException($"'{path}': field '{field}' is {value.GetRawText()}: {why}.");
    }

    private static string CheckRegex(string pattern, string path, string field)
    {
        try { _ = new Regex(pattern); }
        catch (ArgumentException ex) { throw new AdapterLoadException($"'{path}': field '{field}' is not a valid regular expression: {ex.Message}"); }
        return pattern;
    }

    private static IReadOnlyList<KeyValuePair<string, T>> Patterns<T>(JsonElement root, string field, string path, Func<JsonElement, T> read)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return [];
        if (value.ValueKind != JsonValueKind.Object) throw new AdapterLoadException($"'{path}': field '{field}' must be an object.");
        try
        {
            return value.EnumerateObject().Select(p => new KeyValuePair<string, T>(p.Name, read(p.Value))).ToArray();
        }
        catch (Exception ex) when (ex is FormatException or InvalidOperationException)
        {
            throw new AdapterLoadException($"'{path}': field '{field}' holds a value of the wrong type: {ex.Message}", ex);
        }
    }

    private static IReadOnlyList<int>? LayerList(JsonElement root, string path)
    {
        if (!root.TryGetProperty("layers_to_transform", out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.Number => [value.GetInt32()],
            JsonValueKind.Array => value.EnumerateArray().Select(v => v.GetInt32()).ToArray(),
            _ => throw new AdapterLoadException($"'{path}': field 'layers_to_transform' must be an integer or a list of integers."),
        };
    }

    private static IReadOnlyList<string>? StringOrList(JsonElement root, string field, string path)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.String => [value.GetString()!],
            JsonValueKind.Array => value.EnumerateArray().Select(v => v.GetString() ?? "").ToArray(),
            _ => throw new AdapterLoadException($"'{path}': field '{field}' must be a string or a list of strings."),
        };
    }

    private static int? Int(JsonElement root, string field, string path) =>
        root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null
            ? v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw new AdapterLoadException($"'{path}': field '{field}' must be an integer.")
            : null;

    private static double? Number(JsonElement root, string field, string path) =>
        root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null
            ? v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw new AdapterLoadException($"'{path}': field '{field}' must be a number.")
            : null;

    private static string? String(JsonElement root, string field) =>
        root.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
