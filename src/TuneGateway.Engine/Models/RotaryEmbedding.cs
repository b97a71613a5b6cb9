using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>
/// Rotary position embeddings as Hugging Face computes them: inverse frequencies in float32
/// (scaled for <c>llama3</c>), cos/sin of position × frequency tabulated once up to the
/// serving context length, and the rotate-half formulation q·cos + rotate_half(q)·sin.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _cos;
    private readonly Tensor _sin;

    public RotaryEmbedding(RopeParameters rope, int headDim, int maxPositions, ScalarType dtype, Device device)
    {
        HeadDim = headDim;
        MaxPositions = maxPositions;
        using var scope = torch.NewDisposeScope();
        var invFreq = InverseFrequencies(rope, headDim);
        var positions = torch.arange(maxPositions, dtype: ScalarType.Float32);
        var freqs = positions.unsqueeze(1) * invFreq.unsqueeze(0);       // [P, D/2]
        var emb = torch.cat([freqs, freqs], dim: 1);                      // [P, D]
        _cos = emb.cos().to(dtype, device).unsqueeze(1).DetachFromDisposeScope(); // [P, 1, D]
        // rotate_half(x)·sin = roll(x, D/2)·[-sin | sin]: the sign moves into the table.
        var sin = emb.sin();
        long half = headDim / 2;
        _sin = torch.cat([sin.narrow(1, 0, half).neg(), sin.narrow(1, half, half)], dim: 1)
            .to(dtype, device).unsqueeze(1).DetachFromDisposeScope();
    }

    public int HeadDim { get; }
    public int MaxPositions { get; }

    /// <summary>theta^(-2i/d), with Llama 3.1's frequency-dependent scaling when configured.</summary>
    public static Tensor InverseFrequencies(RopeParameters rope, int headDim)
    {
        var exponent = torch.arange(0, headDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / headDim;
        var invFreq = 1.0f / torch.pow(torch.tensor((float)rope.Theta), exponent);
        if (rope.Type == RopeType.Default) return invFreq;

        double oldContext = rope.OriginalMaxPositionEmbeddings;
        double lowFreqWavelength = oldContext / rope.LowFreqFactor;
        double highFreqWavelength = oldContext / rope.HighFreqFactor;
        var wavelength = 2 * Math.PI / invFreq;
        var scaled = torch.where(wavelength > lowFreqWavelength, invFreq / rope.Factor, invFreq);
        var smooth = (oldContext / wavelength - rope.LowFreqFactor) / (rope.HighFreqFactor - rope.LowFreqFactor);
        var smoothed = (1 - smooth) * scaled / rope.Factor + smooth * scaled;
        var isMedium = (wavelength >= highFreqWavelength).logical_and(wavelength <= lowFreqWavelength);
        return torch.where(isMedium, smoothed, scaled);
    }

    /// <summary>cos and signed sin for the given positions, shaped [N, 1, D] to broadcast over heads.</summary>
    public (Tensor Cos, Tensor Sin) Gather(Tensor positions) => (_cos.index_select(0, positions), _sin.index_select(0, positions));

    /// <summary>
    /// Rotates <paramref name="x"/> [N, heads, D]: x·cos + rotate_half(x)·sin, computed as
    /// x·cos + roll(x, D/2)·signedSin (three operations instead of five, the same numbers).
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        long half = x.shape[^1] / 2;
        return torch.addcmul(x * cos, x.roll(half, -1), signedSin, 1);
    }

    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
    }
}
