using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>
/// A decoder-only transformer loaded from a Hugging Face directory: one <see cref="DecoderLayer"/>
/// implementation, configured per family by the declaration in <see cref="ModelConfig"/>.
/// The forward pass works on packed tokens: the tokens of every sequence in a step are one
/// [N, hidden] matrix for all the linear layers, and only the attention backend looks at
/// sequence boundaries (the serving cache, or whole sequences for training and embeddings).
/// </summary>
public sealed class CausalLanguageModel : IDisposable
{
    private readonly DecoderLayer[] _layers;
    private readonly Tensor _embedTokens;
    private readonly Norm _finalNorm;
    private readonly Tensor _lmHead;
    private readonly bool _tiedHead;
    private readonly RotaryEmbedding[] _ropes;

    private CausalLanguageModel(ModelConfig config, string directory, ScalarType dtype, Device device, int maxPositions,
        DecoderLayer[] layers, Tensor embedTokens, Norm finalNorm, Tensor lmHead, bool tiedHead, RotaryEmbedding[] ropes)
    {
        Config = config;
        Directory = directory;
        Dtype = dtype;
        Device = device;
        MaxPositions = maxPositions;
        _layers = layers;
        _embedTokens = embedTokens;
        _finalNorm = finalNorm;
        _lmHead = lmHead;
        _tiedHead = tiedHead;
        _ropes = ropes;
        var groups = layers.SelectMany(l => l.Groups).ToArray();
        for (int i = 0; i < groups.Length; i++) groups[i].Index = i;
        LinearGroups = groups;
    }

    public ModelConfig Config { get; }
    public string Directory { get; }
    public ScalarType Dtype { get; }
    public Device Device { get; }

    /// <summary>Longest sequence (prompt + generated) this instance can run.</summary>
    public int MaxPositions { get; }

    /// <summary>Every fused projection, indexed by <see cref="LinearGroup.Index"/>.</summary>
    public IReadOnlyList<LinearGroup> LinearGroups { get; }

    /// <summary>All Hugging Face linear modules that adapters may target, by module path.</summary>
    public IEnumerable<(LinearGroup Group, ProjectionSlice Slice)> Projections =>
        LinearGroups.SelectMany(g => g.Parts.Select(p => (g, p)));

    /// <summary>Bytes of weights held on the device.</summary>
    public long WeightBytes { get; private set; }

    /// <summary>
    /// Loads a model directory. Every tensor is checked against the shapes config.json implies
    /// before the model is returned; nothing is served from a half-loaded model.
    /// </summary>
    public static CausalLanguageModel Load(string directory, Device device, ScalarType dtype, int? maxPositions = null)
    {
        var config = ModelConfig.FromDirectory(directory);
        using var checkpoint = SafeTensorsCheckpoint.Open(directory);
        if (!config.TieWordEmbeddings && !checkpoint.Contains("lm_head.weight"))
            throw new ModelLoadException($"'{directory}': tensor 'lm_head.weight' is missing and config.json does not set tie_word_embeddings.");
        return Build(config, directory, device, dtype, maxPositions, (name, shape) => checkpoint.Load(name, shape, dtype, device), checkpoint.Contains);
    }

    /// <summary>
    /// A model of the given shape with random weights (normal, std 0.02; norms at 1), for
    /// benchmarks of shapes whose checkpoints are not at hand.
    /// </summary>
    public static CausalLanguageModel CreateRandom(ModelConfig config, Device device, ScalarType dtype, int? maxPositions = null, long seed = 0)
    {
        var generator = new Generator((ulong)seed);
        return Build(config, "(random)", device, dtype, maxPositions, (name, shape) =>
        {
            // Norms start at the identity: w = 1, or w = 0 where the norm multiplies by (1 + w).
            var cpu = name.EndsWith("norm.weight", StringComparison.Ordinal)
                ? (config.Norm == NormKind.OffsetRms ? torch.zeros(shape, ScalarType.Float32) : torch.ones(shape, ScalarType.Float32))
                : torch.randn(shape, ScalarType.Float32, generator: generator).mul_(0.02);
            if (dtype == ScalarType.Float32 && device.type == DeviceType.CPU) return cpu;
            using (cpu) return cpu.to(dtype, device);
        }, name => name.EndsWith("experts.gate_up_proj", StringComparison.Ordinal)); // random experts come fused
    }

    private static CausalLanguageModel Build(ModelConfig config, string directory, Device device, ScalarType dtype, int? maxPositions,
        Func<string, long[], Tensor> read, Func<string, bool> contains)
    {
        int positions = Math.Min(maxPositions ?? config.MaxPositionEmbeddings, config.MaxPositionEmbeddings);
        if (positions <= 0) throw new ModelLoadException($"'{directory}': the context length must be positive.");

        var weights = new WeightReader(read, contains);
        var ropes = new List<RotaryEmbedding>();
        try
        {
            // One RoPE table per distinct parameter set (Gemma 3: one for local, one for global layers).
            var ropeParameters = Enumerable.Range(0, config.NumLayers).Select(config.RopeOf).Distinct().ToList();
            if (ropeParameters.Count == 0) ropeParameters.Add(config.Rope);
            foreach (var rope in ropeParameters) ropes.Add(new RotaryEmbedding(rope, config.RotaryDim, positions, dtype, device));

            var embed = weights.Load("model.embed_tokens.weight", config.VocabSize, config.HiddenSize);
            var layers = new DecoderLayer[config.NumLayers];
            var builder = new LayerBuilder(config, weights, dtype);
            for (int i = 0; i < config.NumLayers; i++)
                layers[i] = builder.Layer(i, ropeParameters.IndexOf(config.RopeOf(i)));
            var norm = builder.ReadNorm("model.norm.weight", config.HiddenSize);

            bool tied = config.TieWordEmbeddings;
            var head = tied ? embed : weights.Load("lm_head.weight", config.VocabSize, config.HiddenSize);

            return new CausalLanguageModel(config, directory, dtype, device, positions, layers, embed, norm, head, tied, ropes.ToArray())
            {
                WeightBytes = weights.Bytes,
            };
        }
        catch
        {
            weights.DisposeAll();
            foreach (var rope in ropes) rope.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Logits for <paramref name="logitRows"/> of one forward pass over packed tokens
    /// ([N] ids at [N] positions to float32 [rows, vocab]); <paramref name="sequenceLengths"/>
    /// [N] is the length of each row's sequence in this pass (its chunk's end), and
    /// <paramref name="attention"/> decides what each row attends to (the serving cache:
    /// <c>Inference.CachedAttentionBackend</c>).
    /// </summary>
    public Tensor Forward(Tensor tokenIds, Tensor positions, Tensor sequenceLengths, IAttentionBackend attention, IProjectionDelta? delta, Tensor logitRows)
    {
        Debug.Assert(positions.shape[0] == tokenIds.shape[0]);
        return Logits(HiddenStates(tokenIds, positions, sequenceLengths, attention, delta).index_select(0, logitRows));
    }

    /// <summary>
    /// Whole sequences without a KV cache, for training and scoring: [B, T] right-padded token
    /// ids to float32 logits [B, T, vocab]. Autograd flows through <paramref name="delta"/>
    /// (the base weights stay frozen).
    /// </summary>
    public Tensor ForwardSequences(Tensor tokenIds, IProjectionDelta? delta = null) =>
        Logits(SequenceHiddenStates(tokenIds, delta)).view(tokenIds.shape[0], tokenIds.shape[1], Config.VocabSize);

    /// <summary>
    /// Mean-pooled final hidden states (after the last norm) of whole sequences, [B, hidden]:
    /// the base model's embedding of a text, used to watch for semantic drift. Positions where
    /// <paramref name="mask"/> is false (padding) are left out of the mean.
    /// </summary>
    public Tensor MeanPooledHiddenStates(Tensor tokenIds, Tensor mask)
    {
        long batch = tokenIds.shape[0], length = tokenIds.shape[1];
        var hidden = _finalNorm.Forward(SequenceHiddenStates(tokenIds, null)).view(batch, length, Config.HiddenSize).to(ScalarType.Float32);
        var weights = mask.to(ScalarType.Float32).unsqueeze(-1);
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1);
    }

    /// <summary>[B, T] ids of whole sequences to hidden states before the final norm, [B·T, hidden].</summary>
    private Tensor SequenceHiddenStates(Tensor tokenIds, IProjectionDelta? delta)
    {
        long batch = tokenIds.shape[0], length = tokenIds.shape[1];
        if (length > MaxPositions) throw new ArgumentException($"Sequences of {length} tokens exceed the {MaxPositions} positions this model instance was loaded for.");
        var positions = torch.arange(length, device: Device).repeat(batch);  // [B·T]
        var lengths = torch.full([batch * length], length, ScalarType.Int64, Device);
        return HiddenStates(tokenIds.reshape(-1), positions, lengths, new CausalAttentionBackend(batch, length), delta);
    }

    /// <summary>The decoder stack: [N] ids at [N] positions to hidden states before the final norm, [N, hidden].</summary>
    private Tensor HiddenStates(Tensor tokenIds, Tensor positions, Tensor sequenceLengths, IAttentionBackend attention, IProjectionDelta? delta)
    {
        var x = Embed(tokenIds);                                                   // [N, H]
        var step = new LayerStep(attention, delta, _ropes.Select(r => r.Gather(positions, sequenceLengths)).ToArray());
        foreach (var layer in _layers) x = layer.Forward(x, step);
        return x;
    }

    /// <summary>Token embeddings, [N] ids to [N, hidden] (× sqrt(hidden) in the model dtype where the family says so).</summary>
    public Tensor Embed(Tensor tokenIds)
    {
        var x = _embedTokens.index_select(0, tokenIds);
        if (!Config.ScaleEmbeddings) return x;
        using var scale = torch.tensor((float)Math.Sqrt(Config.HiddenSize)).to(x.dtype);
        return x * scale;
    }

    /// <summary>Final norm and LM head (soft-capped where the family says so) in float32, [R, hidden] to [R, vocab].</summary>
    public Tensor Logits(Tensor hidden)
    {
        var logits = torch.nn.functional.linear(_finalNorm.Forward(hidden), _lmHead);
        if (Config.FinalLogitSoftCap is double cap) logits = logits.div(cap).tanh().mul(cap);
        return logits.to(ScalarType.Float32);
    }

    public void Dispose()
    {
        foreach (var layer in _layers) layer.Dispose();
        _embedTokens.Dispose();
        _finalNorm.Dispose();
        if (!_tiedHead) _lmHead.Dispose();
        foreach (var rope in _ropes) rope.Dispose();
    }
}
