using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>
/// One Hugging Face linear module (e.g. <c>model.layers.3.self_attn.q_proj</c>) as a slice of a
/// fused <see cref="LinearGroup"/>: its rows of the fused weight are
/// [<see cref="Offset"/>, <see cref="Offset"/> + <see cref="OutFeatures"/>).
/// </summary>
public sealed record ProjectionSlice(string Name, string ModulePath, int Layer, int InFeatures, int OutFeatures, int Offset);

/// <summary>The four kinds of fused projection in a decoder layer.</summary>
public enum LinearKind
{
    /// <summary>q_proj, k_proj and v_proj, fused.</summary>
    Qkv = 0,

    /// <summary>o_proj.</summary>
    Output = 1,

    /// <summary>gate_proj and up_proj, fused.</summary>
    GateUp = 2,

    /// <summary>down_proj.</summary>
    Down = 3,
}

/// <summary>
/// Adds something to the output of a linear group for the rows of the current batch; the LoRA
/// layer implements it. The transformer knows only this interface, so adapters stay out of the
/// model code.
/// </summary>
public interface IProjectionDelta
{
    /// <summary>Returns <paramref name="output"/> plus this delta for <paramref name="input"/>.</summary>
    Tensor Apply(LinearGroup group, Tensor input, Tensor output);
}

/// <summary>
/// Linear projections that share one input, stored as one weight so that they cost one matrix
/// product: q/k/v, o, gate/up and down. Each keeps the identity of the Hugging Face modules
/// it was built from (<see cref="Parts"/>), which is what adapters target.
/// </summary>
public sealed class LinearGroup : IDisposable
{
    public LinearGroup(LinearKind kind, int layer, IReadOnlyList<ProjectionSlice> parts, Tensor weight, Tensor? bias)
    {
        Kind = kind;
        Layer = layer;
        Parts = parts;
        Weight = weight;
        Bias = bias;
        InFeatures = parts[0].InFeatures;
        OutFeatures = parts.Sum(p => p.OutFeatures);
    }

    public LinearKind Kind { get; }
    public int Layer { get; }
    public IReadOnlyList<ProjectionSlice> Parts { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }

    /// <summary>Position of this group in <see cref="CausalLanguageModel.LinearGroups"/>.</summary>
    public int Index => Layer * 4 + (int)Kind;

    /// <summary>[OutFeatures, InFeatures], the fused weight.</summary>
    public Tensor Weight { get; }

    public Tensor? Bias { get; }

    public Tensor Forward(Tensor input, IProjectionDelta? delta)
    {
        var output = torch.nn.functional.linear(input, Weight, Bias);
        return delta is null ? output : delta.Apply(this, input, output);
    }

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
