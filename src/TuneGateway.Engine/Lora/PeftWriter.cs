using System.Text.Json;
using System.Text.Json.Nodes;
using TuneGateway.Engine.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Lora;

/// <summary>One projection's LoRA factors as PEFT stores them: A [r, in] and B [out, r].</summary>
public sealed record PeftModuleWeights(string ModulePath, Tensor A, Tensor B);

/// <summary>
/// Writes an adapter in the layout PEFT's <c>save_pretrained</c> produces, so that
/// <c>PeftModel.from_pretrained</c> loads it as is: <c>adapter_config.json</c> and
/// <c>adapter_model.safetensors</c> with keys <c>base_model.model.&lt;module&gt;.lora_A.weight</c>.
/// Files are written atomically.
/// </summary>
public static class PeftWriter
{
    public static void Write(string directory, int rank, double alpha, IReadOnlyList<string> targetModules, IEnumerable<PeftModuleWeights> modules,
        string? baseModel = null, bool useRsLora = false, IReadOnlyDictionary<string, string>? metadata = null)
    {
        Directory.CreateDirectory(directory);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var m in modules)
        {
            tensors.Add(new($"base_model.model.{m.ModulePath}.lora_A.weight", m.A));
            tensors.Add(new($"base_model.model.{m.ModulePath}.lora_B.weight", m.B));
        }
        SafeTensorsWriter.Write(Path.Combine(directory, "adapter_model.safetensors"), tensors,
            new Dictionary<string, string>(metadata ?? new Dictionary<string, string>()) { ["format"] = "pt" });

        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModel,
            ["r"] = rank,
            ["lora_alpha"] = alpha,
            ["lora_dropout"] = 0.0,
            ["target_modules"] = new JsonArray(targetModules.Select(t => (JsonNode?)JsonValue.Create(t)).ToArray()),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["use_rslora"] = useRsLora,
            ["use_dora"] = false,
            ["modules_to_save"] = null,
            ["init_lora_weights"] = true,
            ["layers_to_transform"] = null,
            ["layers_pattern"] = null,
            ["rank_pattern"] = new JsonObject(),
            ["alpha_pattern"] = new JsonObject(),
            ["inference_mode"] = true,
            ["revision"] = null,
        };
        SafeTensorsWriter.WriteTextAtomically(Path.Combine(directory, "adapter_config.json"),
            config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>A random adapter for <paramref name="model"/> (benchmarks and tests): every targeted projection of every layer.</summary>
    public static void WriteRandom(string directory, CausalLanguageModel model, int rank, IReadOnlyList<string> targets, long seed, double scale = 0.02)
    {
        var generator = new Generator((ulong)seed);
        var modules = model.Projections
            .Where(p => targets.Contains(p.Slice.Name))
            .Select(p => new PeftModuleWeights(p.Slice.ModulePath,
                torch.randn([rank, p.Slice.InFeatures], generator: generator).mul_(scale),
                torch.randn([p.Slice.OutFeatures, rank], generator: generator).mul_(scale)))
            .ToArray();
        try
        {
            Write(directory, rank, 2.0 * rank, targets, modules);
        }
        finally
        {
            foreach (var m in modules) { m.A.Dispose(); m.B.Dispose(); }
        }
    }
}
