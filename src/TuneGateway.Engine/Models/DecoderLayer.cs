using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>
/// What every layer of one forward pass shares: where attention finds its keys, the LoRA delta
/// of the batch's rows (null: base model), and the cos/sin of each RoPE table at the rows' positions.
/// </summary>
internal sealed record LayerStep(IAttentionBackend Attention, IProjectionDelta? Delta, (Tensor Cos, Tensor Sin)[] Rotations);

/// <summary>RMSNorm over the last dimension, as Hugging Face computes it: statistics in float32.</summary>
internal sealed class Norm(Tensor weight, double eps, NormKind kind, ScalarType dtype) : IDisposable
{
    public Tensor Weight { get; } = weight;

    public Tensor Forward(Tensor x)
    {
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to(ScalarType.Float32);
        var normed = x32 * torch.rsqrt(x32.pow(2).mean([-1L], keepdim: true) + eps);
        if (kind == NormKind.OffsetRms)
        {
            // Gemma: (1 + w) in float32, one cast at the end.
            var scaled = normed * (Weight.dtype == ScalarType.Float32 ? Weight : Weight.to(ScalarType.Float32)).add(1.0);
            return scaled.dtype == x.dtype ? scaled : scaled.to(x.dtype);
        }
        return Weight * (normed.dtype == dtype ? normed : normed.to(dtype));
    }

    public void Dispose() => Weight.Dispose();
}

/// <summary>
/// Self-attention: one fused q/k/v product, optional per-head q/k norms, RoPE on the first
/// rotary dimensions, the backend's attention, the output projection.
/// </summary>
internal sealed class Attention(int layer, LinearGroup qkv, LinearGroup output, Norm? queryNorm, Norm? keyNorm,
    int rope, AttentionSpec spec) : IDisposable
{
    public LinearGroup Qkv { get; } = qkv;
    public LinearGroup Output { get; } = output;
    public AttentionSpec Spec { get; } = spec;

    /// <summary>[N, hidden] to [N, hidden].</summary>
    public Tensor Forward(Tensor x, LayerStep step)
    {
        long n = x.shape[0];
        int hq = Spec.Heads, hkv = Spec.KeyValueHeads;
        var qkv = Qkv.Forward(x, step.Delta).view(n, hq + 2 * hkv, Spec.HeadDim);   // [N, Hq+2Hkv, D]
        var q = qkv.narrow(1, 0, hq);                                                 // [N, Hq, D]
        var k = qkv.narrow(1, hq, hkv);                                               // [N, Hkv, D]
        var v = qkv.narrow(1, hq + hkv, hkv);                                         // [N, Hkv, D]
        if (queryNorm is not null) q = queryNorm.Forward(q);
        if (keyNorm is not null) k = keyNorm.Forward(k);
        var (cos, sin) = step.Rotations[rope];                                        // [N, 1, R]
        q = RotaryEmbedding.Apply(q, cos, sin);
        k = RotaryEmbedding.Apply(k, cos, sin);
        return Output.Forward(step.Attention.Attend(layer, q, k, v, Spec), step.Delta);  // [N, Hq·D] -> [N, hidden]
    }

    public void Dispose()
    {
        Qkv.Dispose();
        Output.Dispose();
        queryNorm?.Dispose();
        keyNorm?.Dispose();
    }
}

/// <summary>The feed-forward half of a layer: a dense gated MLP or a mixture of experts.</summary>
internal interface IFeedForward : IDisposable
{
    /// <summary>[N, hidden] to [N, hidden].</summary>
    Tensor Forward(Tensor x, IProjectionDelta? delta);

    /// <summary>The LoRA-targetable projections it holds (none for experts).</summary>
    IEnumerable<LinearGroup> Groups { get; }
}

/// <summary>down(act(gate(x)) · up(x)), gate and up as one fused product.</summary>
internal sealed class GatedMlp(LinearGroup gateUp, LinearGroup down, Activation activation) : IFeedForward
{
    public IEnumerable<LinearGroup> Groups => [gateUp, down];

    public Tensor Forward(Tensor x, IProjectionDelta? delta)
    {
        var gateUpOut = gateUp.Forward(x, delta);                                   // [N, 2I]
        long inter = down.InFeatures;
        var hidden = Activate(gateUpOut.narrow(1, 0, inter), activation) * gateUpOut.narrow(1, inter, inter); // [N, I]
        return down.Forward(hidden, delta);
    }

    public static Tensor Activate(Tensor gate, Activation activation) => activation switch
    {
        Activation.Silu => torch.nn.functional.silu(gate),
        // 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))), PyTorch's gelu(approximate="tanh").
        Activation.GeluTanh => GeluTanh(gate),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    private static Tensor GeluTanh(Tensor x) => x.mul(0.5) * (x.pow(3).mul(0.044715).add(x).mul(Math.Sqrt(2 / Math.PI)).tanh().add(1.0));

    public void Dispose()
    {
        gateUp.Dispose();
        down.Dispose();
    }
}

/// <summary>
/// A top-k routed mixture of experts (Mixtral, Qwen3-MoE), as transformers computes it: router
/// softmax in float32, top-k, optional renormalisation, each expert a gated MLP. The experts'
/// weights are fused 3-D tensors ([E, 2I, H] gate|up, [E, H, I] down); the (token, expert)
/// pairs are grouped by expert so that each chosen expert runs one product over all its tokens.
/// </summary>
internal sealed class MoeBlock(Tensor router, Tensor gateUp, Tensor down, MoeConfig moe, Activation activation) : IFeedForward
{
    public IEnumerable<LinearGroup> Groups => [];

    public Tensor Forward(Tensor x, IProjectionDelta? delta)
    {
        long n = x.shape[0], k = moe.TopK, inter = moe.IntermediateSize;
        var logits = torch.nn.functional.linear(x, router);                                    // [N, E]
        var probabilities = torch.nn.functional.softmax(logits.to(ScalarType.Float32), -1);
        var (weights, chosen) = probabilities.topk((int)k, -1);                               // [N, k] each
        if (moe.NormalizeTopK) weights = weights / weights.sum(-1, keepdim: true);
        weights = weights.to(x.dtype);

        var pairs = chosen.reshape(-1);                                                       // [N·k] expert of each pair
        var order = pairs.argsort();                                                          // pairs grouped by expert
        var tokenOfPair = torch.arange(n, device: x.device).unsqueeze(1).expand(n, k).reshape(-1).index_select(0, order); // [N·k]
        var weightOfPair = weights.reshape(-1).index_select(0, order);                         // [N·k]
        using var counts = pairs.bincount(null, moe.Experts).cpu();
        var perExpert = counts.data<long>().ToArray();

        var output = torch.zeros_like(x);                                                     // [N, H]
        long offset = 0;
        for (int e = 0; e < perExpert.Length; e++)
        {
            long count = perExpert[e];
            if (count == 0) continue;
            var tokens = tokenOfPair.narrow(0, offset, count);                                // [c]
            var gu = torch.nn.functional.linear(x.index_select(0, tokens), gateUp[e]);        // [c, 2I]
            var hidden = GatedMlp.Activate(gu.narrow(1, 0, inter), activation) * gu.narrow(1, inter, inter); // [c, I]
            var y = torch.nn.functional.linear(hidden, down[e]) * weightOfPair.narrow(0, offset, count).unsqueeze(1); // [c, H]
            output = output.index_add(0, tokens, y, 1);
            offset += count;
        }
        return output;
    }

    public void Dispose()
    {
        router.Dispose();
        gateUp.Dispose();
        down.Dispose();
    }
}

/// <summary>
/// One pre-norm decoder layer: x + attention(norm(x)), then x + feed-forward(norm(x)); with
/// sandwich norms (Gemma) each branch's output is normed too before it is added.
/// </summary>
internal sealed class DecoderLayer(Norm inputNorm, Attention attention, Norm? attentionOutputNorm,
    Norm feedForwardNorm, IFeedForward feedForward, Norm? feedForwardOutputNorm) : IDisposable
{
    public Attention Attention { get; } = attention;
    public IFeedForward FeedForward { get; } = feedForward;

    public IEnumerable<LinearGroup> Groups => new[] { Attention.Qkv, Attention.Output }.Concat(FeedForward.Groups);

    /// <summary>[N, hidden] to [N, hidden].</summary>
    public Tensor Forward(Tensor x, LayerStep step)
    {
        var attended = Attention.Forward(inputNorm.Forward(x), step);
        x = x + (attentionOutputNorm?.Forward(attended) ?? attended);
        var fed = FeedForward.Forward(feedForwardNorm.Forward(x), step.Delta);
        return x + (feedForwardOutputNorm?.Forward(fed) ?? fed);
    }

    public void Dispose()
    {
        inputNorm.Dispose();
        Attention.Dispose();
        attentionOutputNorm?.Dispose();
        feedForwardNorm.Dispose();
        FeedForward.Dispose();
        feedForwardOutputNorm?.Dispose();
    }
}
