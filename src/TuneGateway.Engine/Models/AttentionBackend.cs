using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>What one layer's attention computes, beyond q, k and v: the family's declaration for that layer.</summary>
/// <param name="Scale">Scores are q·kᵀ × this.</param>
/// <param name="SoftCap">Scores become cap·tanh(scores/cap) before the mask, when set.</param>
/// <param name="Window">Keys older than this many positions are masked, when set.</param>
public sealed record AttentionSpec(int Heads, int KeyValueHeads, int HeadDim, double Scale, double? SoftCap, int? Window)
{
    public int GroupSize => Heads / KeyValueHeads;

    /// <summary>True when the scores are plain q·kᵀ/sqrt(d): the fused kernel computes them.</summary>
    public bool IsPlain => SoftCap is null && Math.Abs(Scale - 1.0 / Math.Sqrt(HeadDim)) < 1e-12;
}

/// <summary>
/// Where attention looks for keys and values. The model hands every layer's rotated queries,
/// keys and values of the packed rows to the backend and gets the attention output back; the
/// backend alone knows how the rows are laid out in sequences and where earlier keys live (the
/// serving KV cache, or nowhere for whole sequences in training). vLLM's attention backends
/// play the same part.
/// </summary>
public interface IAttentionBackend
{
    /// <summary>q [N, Hq, D], k and v [N, Hkv, D] of the packed rows to the output [N, Hq·D].</summary>
    Tensor Attend(int layer, Tensor q, Tensor k, Tensor v, AttentionSpec spec);
}

/// <summary>The score → softmax → value product both backends share.</summary>
public static class AttentionKernel
{
    /// <summary>
    /// Attention of q [..., Tq, D] over k, v [..., Tk, D] where <paramref name="mask"/> (bool,
    /// broadcastable to [..., Tq, Tk]) is true, or causally when <paramref name="causal"/>.
    /// Plain scores go to the fused kernel; scaled or soft-capped ones are computed as
    /// transformers' eager attention does (softmax in float32).
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, AttentionSpec spec)
    {
        if (spec.IsPlain)
        {
            return causal
                ? torch.nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true)
                : torch.nn.functional.scaled_dot_product_attention(q, k, v, mask);
        }
        var scores = q.matmul(k.transpose(-2, -1)).mul(spec.Scale);                 // [..., Tq, Tk]
        if (spec.SoftCap is double cap) scores = scores.div(cap).tanh().mul(cap);
        if (causal)
        {
            long tq = q.shape[^2], tk = k.shape[^2];
            mask = torch.ones([tq, tk], ScalarType.Bool, q.device).tril(tk - tq);
        }
        if (mask is not null) scores = scores.masked_fill(mask.logical_not(), float.NegativeInfinity);
        var probabilities = torch.nn.functional.softmax(scores.to(ScalarType.Float32), -1).to(q.dtype);
        return probabilities.matmul(v);
    }
}

/// <summary>
/// Whole sequences without a cache, for training and embeddings: the N packed rows are
/// <see cref="Batch"/> sequences of <see cref="Length"/> tokens each (right-padded; padding is
/// causal-masked away from real tokens because it comes last).
/// </summary>
public sealed class CausalAttentionBackend(long batch, long length) : IAttentionBackend
{
    private readonly Dictionary<int, Tensor> _windowMasks = [];

    public long Batch { get; } = batch;
    public long Length { get; } = length;

    public Tensor Attend(int layer, Tensor q, Tensor k, Tensor v, AttentionSpec spec)
    {
        long b = Batch, t = Length;
        var qb = q.view(b, t, spec.Heads, spec.HeadDim).transpose(1, 2);           // [B, Hq, T, D]
        var kb = ExpandKeyValueHeads(k, spec);                                     // [B, Hq, T, D]
        var vb = ExpandKeyValueHeads(v, spec);
        var mask = spec.Window is int w && w < t ? WindowMask(w, q.device) : null;
        var output = AttentionKernel.Attend(qb, kb, vb, mask, causal: mask is null, spec); // [B, Hq, T, D]
        return output.transpose(1, 2).reshape(b * t, spec.Heads * spec.HeadDim);  // [B·T, Hq·D]
    }

    /// <summary>[B·T, Hkv, D] to [B, Hq, T, D], each key/value head repeated for its query heads.</summary>
    private Tensor ExpandKeyValueHeads(Tensor kv, AttentionSpec spec)
    {
        long b = Batch, t = Length;
        var shaped = kv.view(b, t, spec.KeyValueHeads, spec.HeadDim).transpose(1, 2);   // [B, Hkv, T, D]
        if (spec.GroupSize == 1) return shaped;
        return shaped.unsqueeze(2).expand(b, spec.KeyValueHeads, spec.GroupSize, t, spec.HeadDim) // [B, Hkv, G, T, D]
            .reshape(b, spec.Heads, t, spec.HeadDim);
    }

    /// <summary>[T, T]: query t sees keys t-w+1..t.</summary>
    private Tensor WindowMask(int window, Device device)
    {
        if (_windowMasks.TryGetValue(window, out var mask)) return mask;
        var query = torch.arange(Length, device: device).unsqueeze(1);
        var key = torch.arange(Length, device: device).unsqueeze(0);
        return _windowMasks[window] = (key <= query).logical_and(key > query - window);
    }
}
