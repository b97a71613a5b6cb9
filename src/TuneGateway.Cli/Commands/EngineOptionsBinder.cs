using System.CommandLine;
using System.Globalization;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Serving;

namespace TuneGateway.Cli.Commands;

/// <summary>The engine's command-line options, shared by generate, worker and serve.</summary>
internal sealed class EngineOptionsBinder
{
    public Option<string?> Model { get; } = new("--model") { Description = "Hugging Face model directory (config.json, *.safetensors, tokenizer.json). Default: the bundled tiny model." };
    public Option<string?> ServedModelName { get; } = new("--served-model-name") { Description = "Model id clients use (default: the directory name)." };
    public Option<string> Device { get; } = CommonOptions.Device();
    public Option<string> Dtype { get; } = CommonOptions.Dtype();
    public Option<int?> MaxModelLen { get; } = new("--max-model-len") { Description = "Longest prompt + completion (default: max_position_embeddings, at most 4096)." };
    public Option<int> MaxNumSeqs { get; } = new("--max-num-seqs") { Description = "Sequences decoded together.", DefaultValueFactory = _ => 32 };
    public Option<int> MaxBatchTokens { get; } = new("--max-batch-tokens") { Description = "Tokens per forward pass; longer prompts are prefilled in chunks.", DefaultValueFactory = _ => 2048 };
    public Option<int> MaxQueue { get; } = new("--max-queue") { Description = "Waiting requests before 429.", DefaultValueFactory = _ => 256 };
    public Option<string?> KvCacheMemory { get; } = new("--kv-cache-memory")
    {
        Description = "KV cache size: bytes (e.g. 2GiB) or a fraction of the device's free memory after the weights load (e.g. 0.8). Default: what --max-num-seqs x --max-model-len needs.",
    };
    public Option<int> BlockSize { get; } = new("--block-size") { Description = "Tokens per KV cache block.", DefaultValueFactory = _ => 16 };
    public Option<bool> NoPrefixCaching { get; } = new("--no-enable-prefix-caching") { Description = "Do not reuse cached KV blocks of shared prompt prefixes (on by default; keyed by adapter version)." };
    public Option<string[]> Lora { get; } = new("--lora") { Description = "Adapter to load at start, NAME=DIR (repeatable).", AllowMultipleArgumentsPerToken = false };
    public Option<string?> LoraDir { get; } = new("--lora-dir") { Description = "Directory of adapters loaded on demand by name (NAME or NAME/VERSION)." };
    public Option<int> MaxLoras { get; } = new("--max-loras") { Description = "Adapters resident on the device (and mixed in one batch).", DefaultValueFactory = _ => 8 };
    public Option<int> MaxCpuLoras { get; } = new("--max-cpu-loras") { Description = "Adapters kept in host memory.", DefaultValueFactory = _ => 32 };
    public Option<string> LoraDeviceMemory { get; } = new("--lora-device-memory") { Description = "Device memory for adapters.", DefaultValueFactory = _ => "1GiB" };
    public Option<string> LoraHostMemory { get; } = new("--lora-host-memory") { Description = "Host memory for adapters.", DefaultValueFactory = _ => "4GiB" };
    public Option<int> MaxLoraRank { get; } = new("--max-lora-rank") { Description = "Largest adapter rank accepted.", DefaultValueFactory = _ => 64 };
    public Option<string?> ChatTemplate { get; } = new("--chat-template") { Description = "Jinja chat template file replacing the model's own." };
    public Option<string?> ToolCallParser { get; } = new("--tool-call-parser") { Description = "How tool calls are read from outputs: hermes (also Qwen 2.5), llama3_json, mistral. Needed for tool_choice auto, required and named." };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Model, ServedModelName, Device, Dtype, MaxModelLen, MaxNumSeqs, MaxBatchTokens, MaxQueue, KvCacheMemory, BlockSize, NoPrefixCaching,
                     Lora, LoraDir, MaxLoras, MaxCpuLoras, LoraDeviceMemory, LoraHostMemory, MaxLoraRank, ChatTemplate, ToolCallParser })
            command.Options.Add(option);
    }

    /// <summary>A unitless number of at most 1 is a share of free memory; anything else is a size.</summary>
    private static bool IsFraction(string text, out double fraction) =>
        double.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out fraction) && fraction <= 1 && text.Contains('.', StringComparison.Ordinal);

    public EngineOptions Bind(ParseResult parse)
    {
        var loras = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string spec in parse.GetValue(Lora) ?? [])
        {
            int eq = spec.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == spec.Length - 1) throw new ArgumentException($"--lora '{spec}': expected NAME=DIR.");
            loras[spec[..eq]] = spec[(eq + 1)..];
        }
        return new EngineOptions
        {
            ModelDirectory = parse.GetValue(Model) ?? BundledModel.Directory,
            ServedModelName = parse.GetValue(ServedModelName),
            Device = parse.GetValue(Device)!,
            Dtype = parse.GetValue(Dtype)!,
            MaxModelLen = parse.GetValue(MaxModelLen),
            MaxNumSeqs = parse.GetValue(MaxNumSeqs),
            MaxBatchTokens = parse.GetValue(MaxBatchTokens),
            MaxQueue = parse.GetValue(MaxQueue),
            KvCacheMemory = parse.GetValue(KvCacheMemory) is { } kv && !IsFraction(kv, out _) ? ByteSize.Parse(kv, "--kv-cache-memory") : null,
            KvCacheMemoryFraction = parse.GetValue(KvCacheMemory) is { } share && IsFraction(share, out double fraction) ? fraction : null,
            BlockSize = parse.GetValue(BlockSize),
            PrefixCaching = !parse.GetValue(NoPrefixCaching),
            ChatTemplatePath = parse.GetValue(ChatTemplate),
            ToolCallParser = parse.GetValue(ToolCallParser) is { } parser && !TuneGateway.Worker.Tools.ToolCallFormat.Names.Contains(parser)
                ? throw new ArgumentException($"--tool-call-parser '{parser}': expected one of {string.Join(", ", TuneGateway.Worker.Tools.ToolCallFormat.Names)}.")
                : parse.GetValue(ToolCallParser),
            Loras = loras,
            Adapters = new AdapterManagerOptions
            {
                // On the bundled model, its example adapters (shout, reverse) load on demand by name, in serve and worker alike.
                LoraDirectory = parse.GetValue(LoraDir) ?? (parse.GetValue(Model) is null ? BundledModel.Adapters : null),
                MaxLoras = parse.GetValue(MaxLoras),
                MaxCpuLoras = parse.GetValue(MaxCpuLoras),
                LoraDeviceMemory = ByteSize.Parse(parse.GetValue(LoraDeviceMemory)!, "--lora-device-memory"),
                LoraHostMemory = ByteSize.Parse(parse.GetValue(LoraHostMemory)!, "--lora-host-memory"),
                MaxLoraRank = parse.GetValue(MaxLoraRank),
            },
        };
    }
}

/// <summary>Parses sizes like 512MiB, 2GB or 1048576.</summary>
internal static class ByteSize
{
    public static long Parse(string text, string option)
    {
        string s = text.Trim();
        int split = 0;
        while (split < s.Length && (char.IsDigit(s[split]) || s[split] == '.')) split++;
        if (split == 0 || !double.TryParse(s[..split], NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            throw new ArgumentException($"{option} '{text}': expected a size such as 512MiB, 2GB or 1048576.");
        double factor = s[split..].Trim().ToLowerInvariant() switch
        {
            "" or "b" => 1,
            "k" or "kb" => 1e3,
            "kib" => 1024,
            "m" or "mb" => 1e6,
            "mib" => 1 << 20,
            "g" or "gb" => 1e9,
            "gib" => 1 << 30,
            "t" or "tb" => 1e12,
            "tib" => 1L << 40,
            var unit => throw new ArgumentException($"{option} '{text}': unknown unit '{unit}'."),
        };
        return (long)(value * factor);
    }
}
