using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>
/// Rotary position embeddings as Hugging Face computes them: inverse frequencies in float32
/// (scaled per <see cref="RopeType"/>), cos/sin of position × frequency tabulated once up to the
/// serving context length (times the attention factor of yarn and longrope), and the
/// rotate-half formulation q·cos + rotate_half(q)·sin on the first rotary dimensions of a head.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _cos;
    private readonly Tensor _sin;
    private readonly long _longOffset;   // longrope: where the long factors' rows start (0: no second table)
    private readonly long _original;

    public RotaryEmbedding(RopeParameters rope, int rotaryDim, int maxPositions, ScalarType dtype, Device device)
    {
        RotaryDim = rotaryDim;
        MaxPositions = maxPositions;
        using var scope = torch.NewDisposeScope();
        var positions = torch.arange(maxPositions, dtype: ScalarType.Float32);
        var freqs = positions.unsqueeze(1) * InverseFrequencies(rope, rotaryDim).unsqueeze(0);       // [P, R/2]
        if (rope.Type == RopeType.LongRope)
        {
            // Rows P.. hold the long factors' table, for sequences longer than the original context.
            _longOffset = maxPositions;
            _original = rope.OriginalMaxPositionEmbeddings;
            var longFreqs = positions.unsqueeze(1) * InverseFrequencies(rope, rotaryDim, useLongFactor: true).unsqueeze(0);
            freqs = torch.cat([freqs, longFreqs], 0);                                                    // [2P, R/2]
        }
        var emb = torch.cat([freqs, freqs], dim: 1);                      // [P, R]
        var cos = emb.cos();
        var sin = emb.sin();
        if (rope.AttentionFactor != 1.0)
        {
            cos = cos * rope.AttentionFactor;
            sin = sin * rope.AttentionFactor;
        }
        _cos = cos.to(dtype, device).unsqueeze(1).DetachFromDisposeScope(); // [P, 1, R]
        // rotate_half(x)·sin = roll(x, R/2)·[-sin | sin]: the sign moves into the table.
        long half = rotaryDim / 2;
        _sin = torch.cat([sin.narrow(1, 0, half).neg(), sin.narrow(1, half, half)], dim: 1)
            .to(dtype, device).unsqueeze(1).DetachFromDisposeScope();
    }

    public int RotaryDim { get; }
    public int MaxPositions { get; }

    /// <summary>theta^(-2i/d) for d = <paramref name="dim"/>, scaled as the rope type says.</summary>
    public static Tensor InverseFrequencies(RopeParameters rope, int dim, bool useLongFactor = false)
    {
        var exponent = torch.arange(0, dim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / dim;
        var powers = torch.pow(torch.tensor((float)rope.Theta), exponent);   // theta^(2i/d)
        var invFreq = 1.0f / powers;
        switch (rope.Type)
        {
            case RopeType.Default:
            case RopeType.Dynamic:
                return invFreq;
            case RopeType.Linear:
                return invFreq / rope.Factor;
            case RopeType.Llama3:
                return Llama3(rope, invFreq);
            case RopeType.Yarn:
                return Yarn(rope, dim, powers);
            case RopeType.LongRope:
                var factors = (useLongFactor ? rope.LongFactor : rope.ShortFactor) ?? throw new InvalidOperationException("longrope needs short and long factors.");
                return 1.0f / (torch.tensor(factors.Select(f => (float)f).ToArray()) * powers);
            default:
                throw new ArgumentOutOfRangeException(nameof(rope), rope.Type, null);
        }
    }

    private static Tensor Llama3(RopeParameters rope, Tensor invFreq)
    {
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

    /// <summary>
    /// YaRN: frequencies that turn fewer than beta_slow times over the original context are
    /// interpolated (÷ factor), those turning more than beta_fast times are kept, with a linear
    /// ramp over the dimensions between.
    /// </summary>
    private static Tensor Yarn(RopeParameters rope, int dim, Tensor powers)
    {
        double CorrectionDim(double rotations) =>
            dim * Math.Log(rope.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(rope.Theta));
        double low = CorrectionDim(rope.BetaFast), high = CorrectionDim(rope.BetaSlow);
        if (rope.Truncate)
        {
            low = Math.Floor(low);
            high = Math.Ceiling(high);
        }
        low = Math.Max(low, 0);
        high = Math.Min(high, dim - 1);
        if (low == high) high += 0.001; // as transformers does, against a zero-width ramp

        var extrapolation = 1.0f / powers;
        var interpolation = 1.0f / (powers * rope.Factor);
        var ramp = ((torch.arange(dim / 2, dtype: ScalarType.Float32) - low) / (high - low)).clamp(0, 1);
        var extrapolationWeight = 1 - ramp;
        return interpolation * (1 - extrapolationWeight) + extrapolation * extrapolationWeight;
    }

    /// <summary>
    /// cos and signed sin for the given positions, shaped [N, 1, R] to broadcast over heads.
    /// <paramref name="sequenceLengths"/> ([N]: how long each row's sequence is in this forward
    /// pass) matters for longrope only: transformers uses the long factors for a forward pass
    /// over a sequence longer than the original context, the short ones otherwise.
    /// </summary>
    public (Tensor Cos, Tensor Sin) Gather(Tensor positions, Tensor sequenceLengths)
    {
        var rows = _longOffset == 0 ? positions : positions + (sequenceLengths > _original).to(ScalarType.Int64) * _longOffset;
        return (_cos.index_select(0, rows), _sin.index_select(0, rows));
    }

    /// <summary>
    /// Rotates the first R dimensions of <paramref name="x"/> [N, heads, D] (R = the tables'
    /// width): x·cos + rotate_half(x)·sin, computed as x·cos + roll(x, R/2)·signedSin (three
    /// operations instead of five, the same numbers); dimensions past R pass through.
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        long rotary = cos.shape[^1], dim = x.shape[^1];
        if (rotary == dim) return torch.addcmul(x * cos, x.roll(rotary / 2, -1), signedSin, 1);
        var rotated = x.narrow(-1, 0, rotary);                                                   // [N, heads, R]
        return torch.cat([torch.addcmul(rotated * cos, rotated.roll(rotary / 2, -1), signedSin, 1), x.narrow(-1, rotary, dim - rotary)], -1);
    }

    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
    }
}
