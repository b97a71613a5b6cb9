using TorchSharp;
using TorchSharp.Modules;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Training;

/// <summary>
/// LoRA factors being trained, in PEFT's layout (A [r, in], B [out, r], float32), applied to
/// the model's linear groups as output + dropout(x)·Aᵀ·Bᵀ·scale for every targeted projection.
/// A starts Kaiming-uniform and B at zero, as PEFT initialises them, so training starts from
/// the base model's behaviour.
/// </summary>
public sealed class TrainableLora : IProjectionDelta, IDisposable
{
    private readonly Dictionary<string, (Parameter A, Parameter B)> _modules = new(StringComparer.Ordinal);
    private readonly double _scale;
    private readonly double _dropout;

    public TrainableLora(CausalLanguageModel model, LoraTrainingOptions options)
    {
        Rank = options.Rank;
        _scale = options.Alpha / (options.UseRsLora ? Math.Sqrt(options.Rank) : options.Rank);
        _dropout = options.Dropout;
        torch.manual_seed(options.Seed);
        var targets = FusedTargets(options.Targets);
        foreach (var (_, slice) in model.Projections.Where(p => targets.Contains(p.Slice.Name)))
        {
            var a = torch.empty([options.Rank, slice.InFeatures], ScalarType.Float32, model.Device);
            torch.nn.init.kaiming_uniform_(a, Math.Sqrt(5));
            var b = torch.zeros([slice.OutFeatures, options.Rank], ScalarType.Float32, model.Device);
            _modules[slice.ModulePath] = (new Parameter(a, requires_grad: true), new Parameter(b, requires_grad: true));
        }
        if (_modules.Count == 0) throw new ArgumentException("--targets matches no projection of this model.");
        TargetNames = model.Projections.Where(p => _modules.ContainsKey(p.Slice.ModulePath)).Select(p => p.Slice.Name).Distinct().ToArray();
    }

    /// <summary>
    /// The targets plus the fused modules that contain them: on Phi-3, whose checkpoints have
    /// qkv_proj and gate_up_proj, naming q_proj (or gate_proj, ...) trains the fused module.
    /// </summary>
    private static HashSet<string> FusedTargets(IReadOnlyList<string> targets)
    {
        var names = new HashSet<string>(targets, StringComparer.Ordinal);
        if (targets.Any(t => t is "q_proj" or "k_proj" or "v_proj")) names.Add("qkv_proj");
        if (targets.Any(t => t is "gate_proj" or "up_proj")) names.Add("gate_up_proj");
        return names;
    }

    /// <summary>The module names trained (what adapter_config.json's target_modules lists).</summary>
    public IReadOnlyList<string> TargetNames { get; }

    public int Rank { get; }
    public bool Training { get; set; } = true;
    public IEnumerable<Parameter> Parameters => _modules.Values.SelectMany(m => new[] { m.A, m.B });
    public IEnumerable<string> ModulePaths => _modules.Keys;
    public long ParameterCount => _modules.Values.Sum(m => m.A.NumberOfElements + m.B.NumberOfElements);

    public Tensor Forward(LinearGroup group, Tensor input)
    {
        var output = torch.nn.functional.linear(input, group.Weight, group.Bias);
        if (!group.Parts.Any(p => _modules.ContainsKey(p.ModulePath))) return output;

        var x = input.dtype == ScalarType.Float32 ? input : input.to(ScalarType.Float32);
        if (Training && _dropout > 0) x = torch.nn.functional.dropout(x, _dropout, training: true);
        var parts = new List<Tensor>(group.Parts.Count);
        foreach (var part in group.Parts)
        {
            parts.Add(_modules.TryGetValue(part.ModulePath, out var m)
                ? x.matmul(m.A.t()).matmul(m.B.t()).mul(_scale)
                : torch.zeros([x.shape[0], part.OutFeatures], ScalarType.Float32, x.device));
        }
        var delta = parts.Count == 1 ? parts[0] : torch.cat(parts, 1);
        return output + (delta.dtype == output.dtype ? delta : delta.to(output.dtype));
    }

    /// <summary>The factors as PEFT stores them (CPU copies).</summary>
    public IReadOnlyList<Engine.Lora.PeftModuleWeights> Export() =>
        _modules.Select(m => new Engine.Lora.PeftModuleWeights(m.Key, m.Value.A.detach().cpu(), m.Value.B.detach().cpu())).ToArray();

    /// <summary>Loads factors saved by <see cref="Export"/> (a checkpoint) into the parameters.</summary>
    public void Import(string adapterDirectory)
    {
        using var file = SafeTensorsFile.Open(Path.Combine(adapterDirectory, "adapter_model.safetensors"));
        using var noGrad = torch.no_grad();
        foreach (var (path, (a, b)) in _modules)
        {
            using var savedA = file.Load($"base_model.model.{path}.lora_A.weight", ScalarType.Float32, a.device);
            using var savedB = file.Load($"base_model.model.{path}.lora_B.weight", ScalarType.Float32, b.device);
            a.copy_(savedA);
            b.copy_(savedB);
        }
    }

    public void Dispose()
    {
        foreach (var (a, b) in _modules.Values)
        {
            a.Dispose();
            b.Dispose();
        }
    }
}
