using System.Security.Cryptography;
using TorchSharp;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Lora;

/// <summary>
/// One adapter's weights for one fused linear group, ready for batched use:
/// <see cref="A"/> is [in, columns] and <see cref="B"/> is [columns, out of the group]. The
/// columns of every targeted projection in the group sit side by side; its rows of B are zero
/// outside that projection's output slice and are pre-multiplied by its scale (alpha/r).
/// </summary>
public sealed record LoraGroupWeights(Tensor A, Tensor B);

/// <summary>
/// A PEFT LoRA adapter validated against a base model and laid out per fused linear group. The
/// column count per kind of group (<see cref="Columns"/>) is the same in every layer, so that one
/// row mask per kind serves all layers in a mixed batch; layers with fewer columns (rank_pattern,
/// layers_to_transform) are zero-padded, and <see cref="PaddingColumns"/> says how many.
/// </summary>
public sealed class LoraAdapter : IDisposable
{
    private readonly Dictionary<int, LoraGroupWeights> _groups;

    private LoraAdapter(string directory, LoraConfig config, Dictionary<int, LoraGroupWeights> groups, int[] columns,
        int maxRank, long paddingColumns, string checksum, IReadOnlyList<string> targetedModules)
    {
        Directory = directory;
        Config = config;
        _groups = groups;
        Columns = columns;
        MaxRank = maxRank;
        PaddingColumns = paddingColumns;
        Checksum = checksum;
        TargetedModules = targetedModules;
        Bytes = groups.Values.Sum(g => g.A.NumberOfElements * g.A.ElementSize + g.B.NumberOfElements * g.B.ElementSize);
    }

    public string Directory { get; }
    public LoraConfig Config { get; }
    /// <summary>Columns per <see cref="LinearKind"/> (0 where the adapter does not touch that kind).</summary>
    public IReadOnlyList<int> Columns { get; }
    public int MaxRank { get; }
    public long PaddingColumns { get; }
    /// <summary>SHA-256 of adapter_model.safetensors, hex.</summary>
    public string Checksum { get; }
    public IReadOnlyList<string> TargetedModules { get; }
    /// <summary>Bytes of the prepared weights (in the serving dtype).</summary>
    public long Bytes { get; }

    public LoraGroupWeights? Group(int groupIndex) => _groups.GetValueOrDefault(groupIndex);

    public Device Device => _groups.Values.First().A.device;

    private const string KeyPrefix = "base_model.model.";

    /// <summary>
    /// Reads and validates <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> against
    /// <paramref name="model"/>, producing host tensors in the model's dtype on <paramref name="device"/>.
    /// Throws <see cref="AdapterLoadException"/>; nothing is kept from a failed load.
    /// </summary>
    /// <summary>The checksum file the artifact store writes next to the weights (<c>sha256sum</c> format).</summary>
    public const string ChecksumFileName = "adapter_model.safetensors.sha256";

    /// <summary>
    /// When <see cref="ChecksumFileName"/> is present (a published version), the weights must hash
    /// to it: a changed or truncated artifact is refused before anything of it is read.
    /// </summary>
    private static void VerifyChecksum(string weightsPath)
    {
        string checksumPath = weightsPath + ".sha256";
        if (!File.Exists(checksumPath)) return;
        string expected = File.ReadAllText(checksumPath).Split((char[])[' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
        string actual;
        using (var stream = File.OpenRead(weightsPath)) actual = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
        if (!string.Equals(expected, actual, StringComparison.OrdinalIgnoreCase))
            throw new AdapterLoadException($"'{weightsPath}' has SHA-256 {actual}, but '{checksumPath}' records '{expected}': the artifact was changed or corrupted after it was published.");
    }

    public static LoraAdapter Load(string directory, CausalLanguageModel model, int maxRank, Device device)
    {
        if (!System.IO.Directory.Exists(directory))
            throw new AdapterLoadException($"Adapter directory '{directory}' does not exist.");
        var config = LoraConfig.FromFile(Path.Combine(directory, "adapter_config.json"));
        string weightsPath = Path.Combine(directory, "adapter_model.safetensors");
        if (!File.Exists(weightsPath))
        {
            string hint = File.Exists(Path.Combine(directory, "adapter_model.bin"))
                ? " adapter_model.bin is a pickled PyTorch file, which is not loaded (it can run code); save the adapter with safetensors."
                : "";
            throw new AdapterLoadException($"'{weightsPath}' is missing.{hint}");
        }
        VerifyChecksum(weightsPath);

        SafeTensorsFile file;
        try
        {
            file = SafeTensorsFile.Open(weightsPath);
        }
        catch (ModelLoadException ex)
        {
            throw new AdapterLoadException(ex.Message, ex);
        }

        using (file)
        {
            var modules = ReadModuleTensors(file, weightsPath);
            var projections = model.Projections.ToDictionary(p => p.Slice.ModulePath, StringComparer.Ordinal);

            foreach (var module in modules.Keys)
            {
                if (!projections.ContainsKey(module) && model.Config.Moe is not null && IsMixtureOfExpertsModule(module))
                    throw new AdapterLoadException($"'{weightsPath}': tensor '{KeyPrefix}{module}.lora_A.weight' targets '{module}', a mixture-of-experts weight (an expert or the router) of {model.Config.Architecture}; adapters on experts are not supported, only on attention and dense MLP projections. Train with target_modules limited to q_proj, k_proj, v_proj, o_proj (and the dense layers' MLP).");
                if (!projections.ContainsKey(module))
                    throw new AdapterLoadException($"'{weightsPath}': tensor '{KeyPrefix}{module}.lora_A.weight' targets module '{module}', which the base model ({model.Config.ModelType}, {model.Config.NumLayers} layers) does not have as a linear projection. Was the adapter trained for another base model?");
            }

            // Shapes first: a file made for another base fails here, naming tensor and shapes.
            foreach (var (module, (aName, bName)) in modules)
            {
                var (_, slice) = projections[module];
                var a = file.Entries[aName];
                var b = file.Entries[bName];
                int rank = config.RankFor(slice.ModulePath);
                if (rank > maxRank)
                    throw new AdapterLoadException($"'{weightsPath}': module '{slice.ModulePath}' has rank {rank}, above the server's maximum LoRA rank {maxRank} (--max-lora-rank).");
                if (!a.Shape.SequenceEqual([(long)rank, slice.InFeatures]))
                    throw new AdapterLoadException($"'{weightsPath}': tensor '{aName}' has shape [{string.Join(", ", a.Shape)}]; the base model and adapter_config.json (r={rank}) imply [{rank}, {slice.InFeatures}].");
                if (!b.Shape.SequenceEqual([(long)slice.OutFeatures, rank]))
                    throw new AdapterLoadException($"'{weightsPath}': tensor '{bName}' has shape [{string.Join(", ", b.Shape)}]; the base model and adapter_config.json (r={rank}) imply [{slice.OutFeatures}, {rank}].");
            }

            var targeted = projections.Values
                .Where(p => config.Targets(p.Slice.ModulePath, p.Slice.Layer))
                .ToArray();
            foreach (var (_, slice) in targeted)
            {
                if (!modules.ContainsKey(slice.ModulePath))
                    throw new AdapterLoadException($"'{weightsPath}': adapter_config.json targets '{slice.ModulePath}' but the file has no '{KeyPrefix}{slice.ModulePath}.lora_A.weight'.");
            }
            foreach (var module in modules.Keys)
            {
                var (_, slice) = projections[module];
                if (!config.Targets(module, slice.Layer))
                    throw new AdapterLoadException($"'{weightsPath}': the file has weights for '{module}', which adapter_config.json does not target (target_modules / layers_to_transform disagree with the weights).");
            }
            if (targeted.Length == 0)
                throw new AdapterLoadException($"'{Path.Combine(directory, "adapter_config.json")}': 'target_modules' matches none of the base model's linear projections.");

            return Build(directory, config, file, modules, targeted, model, device, weightsPath);
        }
    }

    /// <summary>Module paths inside an MoE block: experts.N.* and the router gate (mlp.gate, block_sparse_moe.gate).</summary>
    private static bool IsMixtureOfExpertsModule(string module) =>
        module.Contains(".experts.", StringComparison.Ordinal) || module.Contains("block_sparse_moe.", StringComparison.Ordinal) ||
        module.EndsWith(".mlp.gate", StringComparison.Ordinal) || module.EndsWith(".experts", StringComparison.Ordinal);

    private static Dictionary<string, (string A, string B)> ReadModuleTensors(SafeTensorsFile file, string path)
    {
        var aNames = new Dictionary<string, string>(StringComparer.Ordinal);
        var bNames = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string name in file.Entries.Keys)
        {
            if (name.Contains("modules_to_save", StringComparison.Ordinal))
                throw new AdapterLoadException($"'{path}': tensor '{name}' holds full weights for modules_to_save, which are not supported.");
            if (name.Contains("lora_embedding_", StringComparison.Ordinal) || name.Contains("magnitude", StringComparison.Ordinal))
                throw new AdapterLoadException($"'{path}': tensor '{name}' is not a LoRA linear weight (embedding LoRA and DoRA are not supported).");
            if (!name.StartsWith(KeyPrefix, StringComparison.Ordinal))
                throw new AdapterLoadException($"'{path}': tensor '{name}' does not start with '{KeyPrefix}' as PEFT's save_pretrained writes.");

            string rest = name[KeyPrefix.Length..].Replace(".default.", ".", StringComparison.Ordinal);
            if (rest.EndsWith(".lora_A.weight", StringComparison.Ordinal)) aNames[rest[..^".lora_A.weight".Length]] = name;
            else if (rest.EndsWith(".lora_B.weight", StringComparison.Ordinal)) bNames[rest[..^".lora_B.weight".Length]] = name;
            else throw new AdapterLoadException($"'{path}': tensor '{name}' is neither a lora_A nor a lora_B weight.");
        }
        if (aNames.Count == 0) throw new AdapterLoadException($"'{path}' holds no LoRA weights.");
        var result = new Dictionary<string, (string, string)>(StringComparer.Ordinal);
        foreach (var (module, a) in aNames)
        {
            if (!bNames.TryGetValue(module, out var b))
                throw new AdapterLoadException($"'{path}': tensor '{a}' has no matching lora_B weight.");
            result[module] = (a, b);
        }
        foreach (var (module, b) in bNames)
        {
            if (!aNames.ContainsKey(module)) throw new AdapterLoadException($"'{path}': tensor '{b}' has no matching lora_A weight.");
        }
        return result;
    }

    private static LoraAdapter Build(string directory, LoraConfig config, SafeTensorsFile file,
        Dictionary<string, (string A, string B)> modules, (LinearGroup Group, ProjectionSlice Slice)[] targeted,
        CausalLanguageModel model, Device device, string weightsPath)
    {
        var byGroup = targeted.GroupBy(t => t.Group.Index).ToDictionary(g => g.Key, g => g.ToArray());
        var groups = model.LinearGroups;
        // Columns per kind: the widest layer of that kind.
        var columns = new int[4];
        long realColumns = 0;
        foreach (var (index, parts) in byGroup)
        {
            int width = parts.Sum(p => config.RankFor(p.Slice.ModulePath));
            realColumns += width;
            int kind = (int)groups[index].Kind;
            columns[kind] = Math.Max(columns[kind], width);
        }
        long allColumns = groups.Where(g => columns[(int)g.Kind] > 0).Sum(g => (long)columns[(int)g.Kind]);

        var result = new Dictionary<int, LoraGroupWeights>();
        try
        {
            using var noGrad = torch.no_grad();
            foreach (var group in groups)
            {
                int width = columns[(int)group.Kind];
                if (width == 0) continue;
                var a = torch.zeros([group.InFeatures, width], model.Dtype, device);
                var b = torch.zeros([width, group.OutFeatures], model.Dtype, device);
                result[group.Index] = new LoraGroupWeights(a, b);
                if (!byGroup.TryGetValue(group.Index, out var parts)) continue;

                int column = 0;
                foreach (var (_, slice) in parts.OrderBy(p => p.Slice.Offset))
                {
                    var (aName, bName) = modules[slice.ModulePath];
                    int rank = config.RankFor(slice.ModulePath);
                    using var loraA = file.Load(aName, ScalarType.Float32, CPU);   // [r, in]
                    using var loraB = file.Load(bName, ScalarType.Float32, CPU);   // [out, r]
                    using var scaledB = loraB * config.ScaleFor(slice.ModulePath);
                    using var aT = loraA.t().to(model.Dtype, device);
                    using var bT = scaledB.t().to(model.Dtype, device);
                    a.narrow(1, column, rank).copy_(aT);
                    b.narrow(0, column, rank).narrow(1, slice.Offset, slice.OutFeatures).copy_(bT);
                    column += rank;
                }
            }
        }
        catch (ModelLoadException ex)
        {
            foreach (var g in result.Values) { g.A.Dispose(); g.B.Dispose(); }
            throw new AdapterLoadException(ex.Message, ex);
        }
        catch
        {
            foreach (var g in result.Values) { g.A.Dispose(); g.B.Dispose(); }
            throw;
        }

        int maxRank = targeted.Max(t => config.RankFor(t.Slice.ModulePath));
        string checksum;
        using (var stream = File.OpenRead(weightsPath)) checksum = Convert.ToHexStringLower(SHA256.HashData(stream));
        return new LoraAdapter(directory, config, result, columns, maxRank, allColumns - realColumns, checksum,
            targeted.Select(t => t.Slice.ModulePath).ToArray());
    }

    /// <summary>A copy of the prepared weights on another device (the device tier of a host-resident adapter).</summary>
    public LoraAdapter CopyTo(Device device)
    {
        var copies = new Dictionary<int, LoraGroupWeights>();
        try
        {
            foreach (var (index, g) in _groups) copies[index] = new LoraGroupWeights(g.A.to(device), g.B.to(device));
        }
        catch
        {
            foreach (var g in copies.Values) { g.A.Dispose(); g.B.Dispose(); }
            throw;
        }
        return new LoraAdapter(Directory, Config, copies, Columns.ToArray(), MaxRank, PaddingColumns, Checksum, TargetedModules);
    }

    public void Dispose()
    {
        foreach (var g in _groups.Values)
        {
            g.A.Dispose();
            g.B.Dispose();
        }
        _groups.Clear();
    }
}

/// <summary>Folds adapters into base weights and back: the merge-and-swap way of serving, kept as a baseline.</summary>
public static class LoraMerge
{
    /// <summary>W += (A·B)ᵀ for every group (sign -1 undoes it, up to rounding).</summary>
    public static void Apply(CausalLanguageModel model, LoraAdapter adapter, int sign = 1)
    {
        using var noGrad = torch.no_grad();
        foreach (var group in model.LinearGroups)
        {
            if (adapter.Group(group.Index) is not { } w) continue;
            using var delta = w.A.matmul(w.B).t();
            group.Weight.add_(delta, alpha: sign);
        }
    }
}
