using TorchSharp;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// The key/value cache, allocated once: <see cref="Slots"/> sequences of up to
/// <see cref="MaxLength"/> tokens each, for every layer. A running sequence owns one slot;
/// tokens are written at their positions, so a decode step never copies the prefix.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor _keys;    // [layers, slots, kv heads, max length, head dim]
    private readonly Tensor _values;
    private readonly Tensor[] _layerKeys;
    private readonly Tensor[] _layerValues;

    public KvCache(ModelConfig config, int slots, int maxLength, ScalarType dtype, Device device)
    {
        if (slots <= 0) throw new ArgumentOutOfRangeException(nameof(slots), "The KV cache needs at least one slot.");
        if (maxLength <= 0) throw new ArgumentOutOfRangeException(nameof(maxLength), "The KV cache needs a positive length.");
        Slots = slots;
        MaxLength = maxLength;
        long[] shape = [config.NumLayers, slots, config.NumKeyValueHeads, maxLength, config.HeadDim];
        _keys = torch.zeros(shape, dtype, device);
        _values = torch.zeros(shape, dtype, device);
        _layerKeys = Enumerable.Range(0, config.NumLayers).Select(i => _keys[i]).ToArray();
        _layerValues = Enumerable.Range(0, config.NumLayers).Select(i => _values[i]).ToArray();
        Bytes = 2 * _keys.NumberOfElements * _keys.ElementSize;
    }

    public int Slots { get; }
    public int MaxLength { get; }
    public long Bytes { get; }

    /// <summary>Cache bytes one token takes across all layers (keys and values).</summary>
    public static long BytesPerToken(ModelConfig config, ScalarType dtype) =>
        2L * config.NumLayers * config.NumKeyValueHeads * config.HeadDim * ElementSize(dtype);

    public static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 => 2,
        _ => throw new ArgumentException($"Unsupported cache dtype {dtype}."),
    };

    /// <summary>The layer's keys and values, each [slots, kv heads, max length, head dim].</summary>
    public (Tensor Keys, Tensor Values) Layer(int layer) => (_layerKeys[layer], _layerValues[layer]);

    /// <summary>Writes [N, kv heads, head dim] keys and values at (slot, position) for each row.</summary>
    public void Write(int layer, Tensor keys, Tensor values, Tensor slots, Tensor positions)
    {
        var s = TensorIndex.Tensor(slots);
        var p = TensorIndex.Tensor(positions);
        _layerKeys[layer].index_put_(keys, s, TensorIndex.Colon, p);
        _layerValues[layer].index_put_(values, s, TensorIndex.Colon, p);
    }

    /// <summary>Copies the first <paramref name="length"/> positions of one slot to another (all layers).</summary>
    public void Move(int from, int to, int length)
    {
        if (from == to || length <= 0) return;
        using var scope = torch.NewDisposeScope();
        _keys.select(1, to).narrow(2, 0, length).copy_(_keys.select(1, from).narrow(2, 0, length));
        _values.select(1, to).narrow(2, 0, length).copy_(_values.select(1, from).narrow(2, 0, length));
    }

    public void Dispose()
    {
        foreach (var t in _layerKeys) t.Dispose();
        foreach (var t in _layerValues) t.Dispose();
        _keys.Dispose();
        _values.Dispose();
    }
}
