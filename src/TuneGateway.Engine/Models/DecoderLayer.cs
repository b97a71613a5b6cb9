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
        Activation.GeluTanh => gate.mul(0.5) * (gate.pow(3).mul(0.044715).add(gate).mul(Math.Sqrt(2 / Math.PI)).tanh().add(1.0)),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    public void Dispose()
    {
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
