using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>
/// Reads tensors by Hugging Face name and shape, counting their bytes and remembering them so
/// that a failed load disposes everything it read.
/// </summary>
internal sealed class WeightReader(Func<string, long[], Tensor> read, Func<string, bool> contains)
{
    public bool Contains(string name) => contains(name);

    private readonly List<IDisposable> _owned = [];

    public long Bytes { get; private set; }

    /// <summary>A tensor the caller will hand to an owner that is itself <see cref="Own"/>ed.</summary>
    public Tensor Read(string name, params long[] shape)
    {
        var t = read(name, shape);
        Bytes += t.NumberOfElements * t.ElementSize;
        return t;
    }

    /// <summary>A tensor disposed with everything else if the load fails.</summary>
    public Tensor Load(string name, params long[] shape) => Own(Read(name, shape));

    public T Own<T>(T owned) where T : IDisposable
    {
        _owned.Add(owned);
        return owned;
    }

    public void DisposeAll()
    {
        foreach (var o in _owned) o.Dispose();
        _owned.Clear();
    }
}

/// <summary>
/// Builds the decoder layers of a checkpoint from its family's declaration: which norms exist,
/// whether projections come fused, what attention computes. Weight names follow transformers.
/// </summary>
internal sealed class LayerBuilder(ModelConfig config, WeightReader weights, ScalarType dtype)
{
    public Norm ReadNorm(string name, long size) =>
        weights.Own(new Norm(weights.Read(name, size), config.RmsNormEps, config.Norm, dtype));

    public DecoderLayer Layer(int i, int rope)
    {
        var c = config;
        string p = $"model.layers.{i}.";
        int h = c.HiddenSize, d = c.HeadDim, nq = c.NumHeads, nkv = c.NumKeyValueHeads;

        var qkv = c.FusedQkv
            ? Group(i, LinearKind.Qkv, c.QkvBias, ("qkv_proj", "self_attn.qkv_proj", (nq + 2 * nkv) * d, h))
            : Group(i, LinearKind.Qkv, c.QkvBias,
                ("q_proj", "self_attn.q_proj", nq * d, h),
                ("k_proj", "self_attn.k_proj", nkv * d, h),
                ("v_proj", "self_attn.v_proj", nkv * d, h));
        var output = Group(i, LinearKind.Output, c.OutputBias, ("o_proj", "self_attn.o_proj", h, nq * d));
        var spec = new AttentionSpec(nq, nkv, d, c.AttentionScale ?? 1.0 / Math.Sqrt(d), c.AttentionSoftCap, c.WindowOf(i));
        var attention = new Attention(i, qkv, output,
            c.QkNorm ? ReadNorm($"{p}self_attn.q_norm.weight", d) : null,
            c.QkNorm ? ReadNorm($"{p}self_attn.k_norm.weight", d) : null,
            rope, spec);

        var inputNorm = ReadNorm($"{p}input_layernorm.weight", h);
        // Llama names the pre-MLP norm post_attention_layernorm; Gemma uses that name for the
        // norm of the attention output and calls the pre-MLP one pre_feedforward_layernorm.
        Norm? attentionOutputNorm = c.SandwichNorms ? ReadNorm($"{p}post_attention_layernorm.weight", h) : null;
        var feedForwardNorm = ReadNorm(c.SandwichNorms ? $"{p}pre_feedforward_layernorm.weight" : $"{p}post_attention_layernorm.weight", h);
        Norm? feedForwardOutputNorm = c.SandwichNorms ? ReadNorm($"{p}post_feedforward_layernorm.weight", h) : null;

        return new DecoderLayer(inputNorm, attention, attentionOutputNorm, feedForwardNorm, FeedForward(i), feedForwardOutputNorm);
    }

    private IFeedForward FeedForward(int i)
    {
        var c = config;
        if (c.IsSparse(i)) return Experts(i, c.Moe!);
        int h = c.HiddenSize, inter = c.IntermediateSize;
        var gateUp = c.FusedGateUp
            ? Group(i, LinearKind.GateUp, c.MlpBias, ("gate_up_proj", "mlp.gate_up_proj", 2 * inter, h))
            : Group(i, LinearKind.GateUp, c.MlpBias,
                ("gate_proj", "mlp.gate_proj", inter, h),
                ("up_proj", "mlp.up_proj", inter, h));
        var down = Group(i, LinearKind.Down, c.MlpBias, ("down_proj", "mlp.down_proj", h, inter));
        return new GatedMlp(gateUp, down, c.Activation);
    }

    /// <summary>
    /// The router and experts of a sparse layer. Checkpoints come in two layouts, both read:
    /// transformers 5's fused 3-D tensors (experts.gate_up_proj [E, 2I, H], experts.down_proj
    /// [E, H, I]) and one module per expert (Mixtral's w1/w3/w2, Qwen3-MoE's gate/up/down_proj),
    /// stacked here into the fused layout. Mixtral's block is block_sparse_moe before transformers 5.
    /// </summary>
    private MoeBlock Experts(int i, MoeConfig moe)
    {
        int h = config.HiddenSize, inter = moe.IntermediateSize, e = moe.Experts;
        string block = config.Architecture == ModelArchitecture.Mixtral && weights.Contains($"model.layers.{i}.block_sparse_moe.gate.weight")
            ? $"model.layers.{i}.block_sparse_moe."
            : $"model.layers.{i}.mlp.";
        var router = weights.Load($"{block}gate.weight", e, h);
        Tensor gateUp, down;
        if (weights.Contains($"{block}experts.gate_up_proj") || !weights.Contains($"{block}experts.0.{PerExpertNames().Gate}.weight"))
        {
            gateUp = weights.Load($"{block}experts.gate_up_proj", e, 2 * inter, h);
            down = weights.Load($"{block}experts.down_proj", e, h, inter);
        }
        else
        {
            var (gateName, upName, downName) = PerExpertNames();
            gateUp = weights.Own(Stack(Enumerable.Range(0, e).Select(x => (Func<Tensor>)(() =>
            {
                using var gate = weights.Read($"{block}experts.{x}.{gateName}.weight", inter, h);
                using var up = weights.Read($"{block}experts.{x}.{upName}.weight", inter, h);
                return torch.cat([gate, up], 0);                                             // [2I, H]
            }))));                                                                           // [E, 2I, H]
            down = weights.Own(Stack(Enumerable.Range(0, e).Select(x => (Func<Tensor>)(() =>
                weights.Read($"{block}experts.{x}.{downName}.weight", h, inter)))));          // [E, H, I]
        }
        return weights.Own(new MoeBlock(router, gateUp, down, moe, config.Activation));
    }

    private (string Gate, string Up, string Down) PerExpertNames() =>
        config.Architecture == ModelArchitecture.Mixtral ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj");

    /// <summary>Stacks per-expert tensors read one at a time (each disposed once copied).</summary>
    private static Tensor Stack(IEnumerable<Func<Tensor>> experts)
    {
        var parts = new List<Tensor>();
        try
        {
            foreach (var read in experts) parts.Add(read());
            return torch.stack(parts, 0);
        }
        finally
        {
            foreach (var part in parts) part.Dispose();
        }
    }

    /// <summary>
    /// The modules <paramref name="parts"/> of layer <paramref name="layer"/> as one fused
    /// group (weights concatenated by rows), remembering each module's slice.
    /// </summary>
    private LinearGroup Group(int layer, LinearKind kind, bool bias, params (string Name, string Module, int Out, int In)[] parts)
    {
        string p = $"model.layers.{layer}.";
        var pieces = new List<Tensor>();
        try
        {
            var w = parts.Select(x => weights.Read($"{p}{x.Module}.weight", x.Out, x.In)).ToArray();
            pieces.AddRange(w);
            var b = bias ? parts.Select(x => weights.Read($"{p}{x.Module}.bias", x.Out)).ToArray() : null;
            pieces.AddRange(b ?? []);

            var slices = new List<ProjectionSlice>();
            int offset = 0;
            foreach (var x in parts)
            {
                slices.Add(new ProjectionSlice(x.Name, $"{p}{x.Module}", layer, x.In, x.Out, offset));
                offset += x.Out;
            }
            // The group takes ownership of the fused tensors; single pieces are used as they are.
            var weight = w.Length == 1 ? w[0] : torch.cat(w, 0);
            var fusedBias = b is null ? null : b.Length == 1 ? b[0] : torch.cat(b, 0);
            var group = weights.Own(new LinearGroup(kind, layer, slices, weight, fusedBias));
            if (w.Length == 1) pieces.Clear();
            return group;
        }
        finally
        {
            foreach (var piece in pieces) piece.Dispose();
        }
    }
}
