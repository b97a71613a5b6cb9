using TorchSharp;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Lora;

/// <summary>
/// The adapters that rows of a batch use, concatenated per linear group: for group g,
/// A = [A_1 | A_2 | ...] ([in, C]) and B = [B_1; B_2; ...] ([C, out]), with
/// <see cref="ColumnOwner"/> naming the adapter of every column. Built when the set of active
/// adapters changes, not every step; its cost grows with the active adapters' ranks only.
/// </summary>
public sealed class LoraWorkingSet : IDisposable
{
    private readonly Tensor?[] _aT;   // [C, in]: written into the group's spare rows
    private readonly Tensor?[] _b;
    private readonly Tensor?[] _columnOwner;

    public LoraWorkingSet(IReadOnlyList<LoraAdapter> adapters, int groupCount, Device device)
    {
        if (adapters.Count == 0) throw new ArgumentException("A working set needs at least one adapter.", nameof(adapters));
        Adapters = adapters;
        _aT = new Tensor?[groupCount];
        _b = new Tensor?[groupCount];
        _columnOwner = new Tensor?[4];
        using var noGrad = torch.no_grad();
        for (int kind = 0; kind < 4; kind++)
        {
            var owners = new List<long>();
            for (int i = 0; i < adapters.Count; i++) owners.AddRange(Enumerable.Repeat((long)i, adapters[i].Columns[kind]));
            if (owners.Count > 0) _columnOwner[kind] = torch.tensor(owners.ToArray(), device: device).unsqueeze(0).DetachFromDisposeScope();
        }
        for (int g = 0; g < groupCount; g++)
        {
            var parts = adapters.Select(a => a.Group(g)).Where(w => w is not null).Select(w => w!).ToArray();
            if (parts.Length == 0) continue;
            using (var a = parts.Length == 1 ? parts[0].A.alias() : torch.cat(parts.Select(p => p.A).ToArray(), 1))
                _aT[g] = a.t().contiguous().DetachFromDisposeScope();
            _b[g] = (parts.Length == 1 ? parts[0].B.alias() : torch.cat(parts.Select(p => p.B).ToArray(), 0)).DetachFromDisposeScope();
        }
        Bytes = _aT.Concat(_b).Where(t => t is not null).Sum(t => t!.NumberOfElements * t.ElementSize);
    }

    public IReadOnlyList<LoraAdapter> Adapters { get; }
    public long Bytes { get; }

    internal Tensor? AT(int group) => _aT[group];
    internal Tensor? B(int group) => _b[group];
    internal Tensor? ColumnOwner(LinearKind kind) => _columnOwner[(int)kind];

    /// <summary>
    /// The per-step delta for rows whose adapters are given as indices into <see cref="Adapters"/>
    /// (-1 for base-model rows). Returns null when no row uses an adapter.
    /// </summary>
    public LoraBatch? ForRows(int[] rowAdapter, ScalarType dtype, Device device)
    {
        if (rowAdapter.All(a => a < 0)) return null;
        // Every row on the only adapter: no mask to apply.
        if (Adapters.Count == 1 && rowAdapter.All(a => a == 0)) return new LoraBatch(this, new Tensor?[4], masked: false);
        var rows = torch.tensor(rowAdapter.Select(a => (long)a).ToArray(), device: device).unsqueeze(1);
        var masks = new Tensor?[4];
        for (int kind = 0; kind < 4; kind++)
        {
            if (_columnOwner[kind] is { } owner) masks[kind] = rows.eq(owner).to(dtype);
        }
        return new LoraBatch(this, masks, masked: true);
    }

    public void Dispose()
    {
        foreach (var t in _aT.Concat(_b).Concat(_columnOwner)) t?.Dispose();
    }
}

/// <summary>
/// Per-row LoRA for one forward pass: for group g, [y | h] = x·[W | A_g]ᵀ in one product (the
/// working set's A factors sit in the group's spare weight rows), then
/// y + (h ⊙ M) · B_g, where the mask M keeps, for each row, only its own adapter's columns.
/// Two tensor operations per group beyond the base product, whatever the number of adapters or
/// their ranks; weights are never merged.
/// </summary>
public sealed class LoraBatch : IProjectionDelta
{
    private readonly LoraWorkingSet _set;
    private readonly Tensor?[] _masks;
    private readonly bool _masked;

    internal LoraBatch(LoraWorkingSet set, Tensor?[] masks, bool masked)
    {
        _set = set;
        _masks = masks;
        _masked = masked;
    }

    public Tensor Forward(LinearGroup group, Tensor input)
    {
        var aT = _set.AT(group.Index);
        var mask = _masks[(int)group.Kind];
        if (aT is null || (_masked && mask is null)) return torch.nn.functional.linear(input, group.Weight, group.Bias);

        int columns = (int)aT.shape[0];
        if (!ReferenceEquals(group.SpareRowsOwner, _set))
        {
            group.ReserveSpareRows(columns);
            group.WriteSpareRows(aT);
            group.SpareRowsOwner = _set;
        }
        var (weight, bias) = group.Extended(columns);
        var both = torch.nn.functional.linear(input, weight, bias);
        var shrunk = both.narrow(1, group.OutFeatures, columns);
        if (_masked) shrunk = shrunk.mul(mask!);
        return torch.addmm(both.narrow(1, 0, group.OutFeatures), shrunk, _set.B(group.Index)!, beta: 1, alpha: 1);
    }
}
