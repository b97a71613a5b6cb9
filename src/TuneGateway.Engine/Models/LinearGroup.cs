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
/// Replaces the plain product of a linear group for the rows of the current batch; the LoRA
/// layer implements it. The transformer knows only this interface, so adapters stay out of the
/// model code.
/// </summary>
public interface IProjectionDelta
{
    /// <summary>The group's output for <paramref name="input"/> ([N, in] to [N, out]).</summary>
    Tensor Forward(LinearGroup group, Tensor input);
}

/// <summary>
/// Linear projections that share one input, stored as one weight so that they cost one matrix
/// product: q/k/v, o, gate/up and down. Each keeps the identity of the Hugging Face modules it
/// was built from (<see cref="Parts"/>), which is what adapters target.
/// <para>
/// The weight may carry spare rows below the model's own (<see cref="ReserveSpareRows"/>): a
/// LoRA layer writes its adapters' A factors there, so that one matrix product yields both the
/// base output and the LoRA down-projection.
/// </para>
/// </summary>
public sealed class LinearGroup : IDisposable
{
    private Tensor _storage;          // [OutFeatures + spare, InFeatures]
    private Tensor? _biasStorage;     // [OutFeatures + spare], zeros in the spare part
    private Tensor _weight;           // view: the model's rows
    private Tensor? _bias;
    private int _extendedRows = -1;
    private Tensor? _extendedWeight;
    private Tensor? _extendedBias;

    public LinearGroup(LinearKind kind, int layer, IReadOnlyList<ProjectionSlice> parts, Tensor weight, Tensor? bias)
    {
        Kind = kind;
        Layer = layer;
        Parts = parts;
        InFeatures = parts[0].InFeatures;
        OutFeatures = parts.Sum(p => p.OutFeatures);
        _storage = weight;
        _biasStorage = bias;
        _weight = weight.alias();
        _bias = bias?.alias();
    }

    public LinearKind Kind { get; }
    public int Layer { get; }
    public IReadOnlyList<ProjectionSlice> Parts { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }

    /// <summary>Position of this group in <see cref="CausalLanguageModel.LinearGroups"/> (set by the model).</summary>
    public int Index { get; internal set; } = -1;

    /// <summary>[OutFeatures, InFeatures], the fused weight.</summary>
    public Tensor Weight => _weight;

    public Tensor? Bias => _bias;

    /// <summary>Rows available below the model's own for adapter factors.</summary>
    public int SpareRows => (int)_storage.shape[0] - OutFeatures;

    /// <summary>Whatever last wrote the spare rows (the LoRA layer uses it to skip rewriting).</summary>
    public object? SpareRowsOwner { get; set; }

    public Tensor Forward(Tensor input, IProjectionDelta? delta) =>
        delta is null ? torch.nn.functional.linear(input, _weight, _bias) : delta.Forward(this, input);

    /// <summary>Grows the spare rows to at least <paramref name="rows"/> (rounded up to 64); copies the weight once.</summary>
    public void ReserveSpareRows(int rows)
    {
        if (rows <= SpareRows) return;
        int spare = (rows + 63) / 64 * 64;
        using var noGrad = torch.no_grad();
        // Long-lived: kept out of any dispose scope the caller may be in.
        var storage = torch.zeros([OutFeatures + spare, InFeatures], _storage.dtype, _storage.device).DetachFromDisposeScope();
        storage.narrow(0, 0, OutFeatures).copy_(_weight);
        Tensor? biasStorage = null;
        if (_bias is not null)
        {
            biasStorage = torch.zeros([OutFeatures + spare], _bias.dtype, _bias.device).DetachFromDisposeScope();
            biasStorage.narrow(0, 0, OutFeatures).copy_(_bias);
        }
        DisposeViews();
        _storage.Dispose();
        _biasStorage?.Dispose();
        _storage = storage;
        _biasStorage = biasStorage;
        _weight = storage.narrow(0, 0, OutFeatures).DetachFromDisposeScope();
        _bias = biasStorage?.narrow(0, 0, OutFeatures).DetachFromDisposeScope();
        SpareRowsOwner = null;
    }

    /// <summary>Writes [rows, InFeatures] into the first spare rows (reserved beforehand).</summary>
    public void WriteSpareRows(Tensor rows)
    {
        using var noGrad = torch.no_grad();
        using var target = _storage.narrow(0, OutFeatures, rows.shape[0]);
        target.copy_(rows);
    }

    /// <summary>The weight and bias including the first <paramref name="spareRows"/> spare rows.</summary>
    public (Tensor Weight, Tensor? Bias) Extended(int spareRows)
    {
        if (spareRows != _extendedRows)
        {
            _extendedWeight?.Dispose();
            _extendedBias?.Dispose();
            _extendedWeight = _storage.narrow(0, 0, OutFeatures + spareRows).DetachFromDisposeScope();
            _extendedBias = _biasStorage?.narrow(0, 0, OutFeatures + spareRows).DetachFromDisposeScope();
            _extendedRows = spareRows;
        }
        return (_extendedWeight!, _extendedBias);
    }

    private void DisposeViews()
    {
        _weight.Dispose();
        _bias?.Dispose();
        _extendedWeight?.Dispose();
        _extendedBias?.Dispose();
        _extendedWeight = null;
        _extendedBias = null;
        _extendedRows = -1;
    }

    public void Dispose()
    {
        DisposeViews();
        _storage.Dispose();
        _biasStorage?.Dispose();
    }
}
