using System.Diagnostics;
using TorchSharp;
using TuneGateway.Engine.Inference;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>The weights of one decoder layer.</summary>
internal sealed class DecoderLayer : IDisposable
{
    public required Tensor InputNorm { get; init; }
    public required LinearGroup Qkv { get; init; }
    public required LinearGroup Output { get; init; }
    public required Tensor PostAttentionNorm { get; init; }
    public required LinearGroup GateUp { get; init; }
    public required LinearGroup Down { get; init; }

    public void Dispose()
    {
        InputNorm.Dispose();
        Qkv.Dispose();
        Output.Dispose();
        PostAttentionNorm.Dispose();
        GateUp.Dispose();
        Down.Dispose();
    }
}

/// <summary>
/// A Llama-family decoder-only transformer (Llama, Mistral, Qwen2) loaded from a Hugging Face
/// directory. The forward pass works on packed tokens: the tokens of every sequence in a step
/// are one [N, hidden] matrix for all the linear layers, and only attention looks at sequence
/// boundaries (batched for single-token decode rows, per sequence for prefill chunks).
/// </summary>
public sealed class CausalLanguageModel : IDisposable
{
    private readonly DecoderLayer[] _layers;
    private readonly Tensor _embedTokens;
    private readonly Tensor _finalNorm;
    private readonly Tensor _lmHead;
    private readonly bool _tiedHead;
    private readonly RotaryEmbedding _rope;

    private CausalLanguageModel(ModelConfig config, string directory, ScalarType dtype, Device device, int maxPositions,
        DecoderLayer[] layers, Tensor embedTokens, Tensor finalNorm, Tensor lmHead, bool tiedHead)
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
        _rope = new RotaryEmbedding(config.Rope, config.HeadDim, maxPositions, dtype, device);
        LinearGroups = layers.SelectMany(l => new[] { l.Qkv, l.Output, l.GateUp, l.Down }).ToArray();
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
        return Build(config, directory, device, dtype, maxPositions, (name, shape) => checkpoint.Load(name, shape, dtype, device));
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
            var cpu = name.EndsWith("norm.weight", StringComparison.Ordinal)
                ? torch.ones(shape, ScalarType.Float32)
                : torch.randn(shape, ScalarType.Float32, generator: generator).mul_(0.02);
            if (dtype == ScalarType.Float32 && device.type == DeviceType.CPU) return cpu;
            using (cpu) return cpu.to(dtype, device);
        });
    }

    private static CausalLanguageModel Build(ModelConfig config, string directory, Device device, ScalarType dtype, int? maxPositions,
        Func<string, long[], Tensor> read)
    {
        int positions = Math.Min(maxPositions ?? config.MaxPositionEmbeddings, config.MaxPositionEmbeddings);
        if (positions <= 0) throw new ModelLoadException($"'{directory}': the context length must be positive.");

        var loaded = new List<IDisposable>();
        try
        {
            long bytes = 0;
            Tensor Read(string name, long[] shape)
            {
                var t = read(name, shape);
                bytes += t.NumberOfElements * t.ElementSize;
                return t;
            }
            Tensor Load(string name, params long[] shape)
            {
                var t = Read(name, shape);
                loaded.Add(t);
                return t;
            }

            int h = config.HiddenSize, d = config.HeadDim, nq = config.NumHeads, nkv = config.NumKeyValueHeads, inter = config.IntermediateSize;
            var embed = Load("model.embed_tokens.weight", config.VocabSize, h);
            var layers = new DecoderLayer[config.NumLayers];
            for (int i = 0; i < config.NumLayers; i++)
            {
                string p = $"model.layers.{i}.";
                LinearGroup Group(LinearKind kind, bool bias, params (string Name, string Module, int Out, int In)[] parts)
                {
                    var pieces = new List<Tensor>();
                    try
                    {
                        var weights = parts.Select(x => Read($"{p}{x.Module}.weight", [x.Out, x.In])).ToArray();
                        pieces.AddRange(weights);
                        var biases = bias ? parts.Select(x => Read($"{p}{x.Module}.bias", [x.Out])).ToArray() : null;
                        pieces.AddRange(biases ?? []);

                        var slices = new List<ProjectionSlice>();
                        int offset = 0;
                        foreach (var x in parts)
                        {
                            slices.Add(new ProjectionSlice(x.Name, $"model.layers.{i}.{x.Module}", i, x.In, x.Out, offset));
                            offset += x.Out;
                        }
                        var weight = weights.Length == 1 ? weights[0] : torch.cat(weights, 0);
                    // LinearGroup takes ownership of the fused tensors.
                        var fusedBias = biases is null ? null : biases.Length == 1 ? biases[0] : torch.cat(biases, 0);
                        var group = new LinearGroup(kind, i, slices, weight, fusedBias);
                        loaded.Add(group);
                        if (weights.Length == 1) pieces.Clear(); // now owned by the group
                        return group;
                    }
                    finally
                    {
                        foreach (var piece in pieces) piece.Dispose();
                    }
                }

                layers[i] = new DecoderLayer
                {
                    InputNorm = Load($"{p}input_layernorm.weight", h),
                    Qkv = Group(LinearKind.Qkv, config.QkvBias,
                        ("q_proj", "self_attn.q_proj", nq * d, h),
                        ("k_proj", "self_attn.k_proj", nkv * d, h),
                        ("v_proj", "self_attn.v_proj", nkv * d, h)),
                    Output = Group(LinearKind.Output, config.OutputBias, ("o_proj", "self_attn.o_proj", h, nq * d)),
                    PostAttentionNorm = Load($"{p}post_attention_layernorm.weight", h),
                    GateUp = Group(LinearKind.GateUp, config.MlpBias,
                        ("gate_proj", "mlp.gate_proj", inter, h),
                        ("up_proj", "mlp.up_proj", inter, h)),
                    Down = Group(LinearKind.Down, config.MlpBias, ("down_proj", "mlp.down_proj", h, inter)),
                };
            }
            var norm = Load("model.norm.weight", h);

            bool tied = config.TieWordEmbeddings;
            var head = tied ? embed : Load("lm_head.weight", config.VocabSize, h);

            return new CausalLanguageModel(config, directory, dtype, device, positions, layers, embed, norm, head, tied)
            {
                WeightBytes = bytes,
            };
        }
        catch
        {
            foreach (var t in loaded) t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs one forward pass over the packed tokens of <paramref name="batch"/>, writes their
    /// keys and values into <paramref name="cache"/>, and returns float32 logits for the rows
    /// <paramref name="batch"/> asks for ([rows, vocab]).
    /// </summary>
    public Tensor Forward(ForwardBatch batch, KvCache cache, IProjectionDelta? delta = null)
    {
        Debug.Assert(batch.Positions.shape[0] == batch.TokenIds.shape[0]);
        var x = Embed(batch.TokenIds);
        var (cos, sin) = _rope.Gather(batch.Positions);
        for (int i = 0; i < _layers.Length; i++)
        {
            x = Layer(i, x, cos, sin, batch, cache, delta);
        }
        return Logits(x.index_select(0, batch.LogitRows));
    }

    /// <summary>
    /// Whole sequences without a KV cache, for training and scoring: [B, T] right-padded token
    /// ids to float32 logits [B, T, vocab]. Autograd flows through <paramref name="delta"/>
    /// (the base weights stay frozen).
    /// </summary>
    public Tensor ForwardSequences(Tensor tokenIds, IProjectionDelta? delta = null) =>
        Logits(HiddenStates(tokenIds, delta)).view(tokenIds.shape[0], tokenIds.shape[1], Config.VocabSize);

    /// <summary>
    /// Mean-pooled final hidden states (after the last norm) of whole sequences, [B, hidden]:
    /// the base model's embedding of a text, used to watch for semantic drift. Positions where
    /// <paramref name="mask"/> is false (padding) are left out of the mean.
    /// </summary>
    public Tensor MeanPooledHiddenStates(Tensor tokenIds, Tensor mask)
    {
        long batch = tokenIds.shape[0], length = tokenIds.shape[1];
        var hidden = RmsNorm(HiddenStates(tokenIds, null), _finalNorm).view(batch, length, Config.HiddenSize).to(ScalarType.Float32);
        var weights = mask.to(ScalarType.Float32).unsqueeze(-1);
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1);
    }

    /// <summary>Hidden states before the final norm, [B*T, hidden].</summary>
    private Tensor HiddenStates(Tensor tokenIds, IProjectionDelta? delta)
    {
        var c = Config;
        long batch = tokenIds.shape[0], length = tokenIds.shape[1];
        if (length > MaxPositions) throw new ArgumentException($"Sequences of {length} tokens exceed the {MaxPositions} positions this model instance was loaded for.");
        var x = Embed(tokenIds.reshape(-1));                                  // [B*T, H]
        var positions = torch.arange(length, device: Device).repeat(batch);  // [B*T]
        var (cos, sin) = _rope.Gather(positions);
        for (int i = 0; i < _layers.Length; i++)
        {
            var layer = _layers[i];
            var qkv = layer.Qkv.Forward(RmsNorm(x, layer.InputNorm), delta).view(batch * length, c.NumHeads + 2 * c.NumKeyValueHeads, c.HeadDim);
            var qk = RotaryEmbedding.Apply(qkv.narrow(1, 0, c.NumHeads + c.NumKeyValueHeads), cos, sin);
            var q = qk.narrow(1, 0, c.NumHeads).view(batch, length, c.NumHeads, c.HeadDim).transpose(1, 2);
            var k = ExpandKeyValueHeads(qk.narrow(1, c.NumHeads, c.NumKeyValueHeads), batch, length);
            var v = ExpandKeyValueHeads(qkv.narrow(1, c.NumHeads + c.NumKeyValueHeads, c.NumKeyValueHeads), batch, length);
            Tensor attention;
            if (c.SlidingWindow is int window && window < length)
            {
                var query = torch.arange(length, device: Device).unsqueeze(1);
                var key = torch.arange(length, device: Device).unsqueeze(0);
                var mask = (key <= query).logical_and(key > query - window);
                attention = torch.nn.functional.scaled_dot_product_attention(q, k, v, mask);
            }
            else
            {
                attention = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
            }
            x = x + layer.Output.Forward(attention.transpose(1, 2).reshape(batch * length, c.NumHeads * c.HeadDim), delta);
            var gateUp = layer.GateUp.Forward(RmsNorm(x, layer.PostAttentionNorm), delta);
            long inter = c.IntermediateSize;
            x = x + layer.Down.Forward(torch.nn.functional.silu(gateUp.narrow(1, 0, inter)) * gateUp.narrow(1, inter, inter), delta);
        }
        return x;
    }

    /// <summary>[B*T, Hkv, D] to [B, Hq, T, D], each key/value head repeated for its query heads.</summary>
    private Tensor ExpandKeyValueHeads(Tensor kv, long batch, long length)
    {
        var c = Config;
        var shaped = kv.view(batch, length, c.NumKeyValueHeads, c.HeadDim).transpose(1, 2);   // [B, Hkv, T, D]
        if (c.GroupSize == 1) return shaped;
        return shaped.unsqueeze(2).expand(batch, c.NumKeyValueHeads, c.GroupSize, length, c.HeadDim).reshape(batch, c.NumHeads, length, c.HeadDim);
    }

    /// <summary>Token embeddings, [N] ids to [N, hidden].</summary>
    public Tensor Embed(Tensor tokenIds) => _embedTokens.index_select(0, tokenIds);

    /// <summary>Final norm and LM head in float32, [R, hidden] to [R, vocab].</summary>
    public Tensor Logits(Tensor hidden)
    {
        var normed = RmsNorm(hidden, _finalNorm);
        return torch.nn.functional.linear(normed, _lmHead).to(ScalarType.Float32);
    }

    private Tensor Layer(int index, Tensor x, Tensor cos, Tensor sin, ForwardBatch batch, KvCache cache, IProjectionDelta? delta)
    {
        var layer = _layers[index];
        var c = Config;
        long n = x.shape[0];

        var qkv = layer.Qkv.Forward(RmsNorm(x, layer.InputNorm), delta).view(n, c.NumHeads + 2 * c.NumKeyValueHeads, c.HeadDim);
        var qk = RotaryEmbedding.Apply(qkv.narrow(1, 0, c.NumHeads + c.NumKeyValueHeads), cos, sin);
        var q = qk.narrow(1, 0, c.NumHeads);
        var k = qk.narrow(1, c.NumHeads, c.NumKeyValueHeads);
        var v = qkv.narrow(1, c.NumHeads + c.NumKeyValueHeads, c.NumKeyValueHeads);

        cache.Write(index, k, v, batch.CacheSlots, batch.Positions);
        var attention = Attention(index, q, batch, cache);
        x = x + layer.Output.Forward(attention, delta);

        var gateUp = layer.GateUp.Forward(RmsNorm(x, layer.PostAttentionNorm), delta);
        long inter = c.IntermediateSize;
        var mlp = torch.nn.functional.silu(gateUp.narrow(1, 0, inter)) * gateUp.narrow(1, inter, inter);
        return x + layer.Down.Forward(mlp, delta);
    }

    /// <summary>Attention for every row: decode rows batched over the cache, prefill chunks one by one.</summary>
    private Tensor Attention(int layer, Tensor q, ForwardBatch batch, KvCache cache)
    {
        var c = Config;
        var parts = new List<Tensor>(1 + batch.Prefills.Count);
        var (keys, values) = cache.Layer(layer);

        if (batch.DecodeCount > 0)
        {
            int rows = batch.DecodeCount;
            var qd = q.narrow(0, 0, rows).view(rows, c.NumKeyValueHeads, c.GroupSize, c.HeadDim);
            Tensor kd, vd;
            if (batch.DecodeSlotStart is int start)
            {
                kd = keys.narrow(0, start, rows).narrow(2, 0, batch.DecodeKeyLength);
                vd = values.narrow(0, start, rows).narrow(2, 0, batch.DecodeKeyLength);
            }
            else
            {
                kd = keys.index_select(0, batch.DecodeSlots!).narrow(2, 0, batch.DecodeKeyLength);
                vd = values.index_select(0, batch.DecodeSlots!).narrow(2, 0, batch.DecodeKeyLength);
            }
            var od = torch.nn.functional.scaled_dot_product_attention(qd, kd, vd, batch.DecodeMask);
            parts.Add(od.reshape(rows, c.NumHeads * c.HeadDim));
        }

        foreach (var chunk in batch.Prefills)
        {
            int t = chunk.Length;
            int keysLength = chunk.Start + t;
            // [T, Hq, D] -> [1, Hkv, G*T, D]: the G query heads sharing a key/value head become
            // extra query rows, so GQA needs no copy of the keys.
            var qp = q.narrow(0, chunk.Offset, t).view(t, c.NumKeyValueHeads, c.GroupSize, c.HeadDim)
                .permute(1, 2, 0, 3).reshape(1, c.NumKeyValueHeads, c.GroupSize * t, c.HeadDim);
            var kp = keys[chunk.Slot].narrow(1, 0, keysLength).unsqueeze(0);
            var vp = values[chunk.Slot].narrow(1, 0, keysLength).unsqueeze(0);
            var op = torch.nn.functional.scaled_dot_product_attention(qp, kp, vp, chunk.Mask);
            parts.Add(op.view(c.NumKeyValueHeads, c.GroupSize, t, c.HeadDim).permute(2, 0, 1, 3).reshape(t, c.NumHeads * c.HeadDim));
        }
        return parts.Count == 1 ? parts[0] : torch.cat(parts, 0);
    }

    /// <summary>RMSNorm as Hugging Face computes it: in float32, then scaled in the model dtype.</summary>
    internal Tensor RmsNorm(Tensor x, Tensor weight)
    {
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to(ScalarType.Float32);
        var normed = x32 * torch.rsqrt(x32.pow(2).mean([-1L], keepdim: true) + Config.RmsNormEps);
        return weight * (normed.dtype == Dtype ? normed : normed.to(Dtype));
    }

    public void Dispose()
    {
        foreach (var layer in _layers) layer.Dispose();
        _embedTokens.Dispose();
        _finalNorm.Dispose();
        if (!_tiedHead) _lmHead.Dispose();
        _rope.Dispose();
    }
}
