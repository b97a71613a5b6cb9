using TorchSharp;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference.Paging;

/// <summary>
/// The key/value tensors, allocated once as fixed-size blocks of <see cref="BlockSize"/> tokens
/// for every layer. A sequence's tokens live in the blocks its block table lists, in order:
/// token p is at offset p % BlockSize of block table[p / BlockSize]. Which blocks are free,
/// shared or cached is <see cref="BlockPool"/>'s business; this class only stores and gathers.
/// </summary>
public sealed class PagedKvCache : IDisposable
{
    public const int DefaultBlockSize = 16;

    private readonly Tensor _keys;          // [layers, blocks, block size, kv heads, head dim]
    private readonly Tensor _values;
    private readonly Tensor[] _layerKeys;   // [blocks, block size, kv heads, head dim] views
    private readonly Tensor[] _layerValues;
    private readonly Tensor[] _flatKeys;    // [blocks · block size, kv heads, head dim] views: one row per token slot
    private readonly Tensor[] _flatValues;

    public PagedKvCache(ModelConfig config, int blocks, int blockSize, ScalarType dtype, Device device)
    {
        if (blocks < 2) throw new ArgumentOutOfRangeException(nameof(blocks), "The KV cache needs at least one block besides the null block.");
        if (blockSize < 1) throw new ArgumentOutOfRangeException(nameof(blockSize), "The block size must be positive.");
        Blocks = blocks;
        BlockSize = blockSize;
        long[] shape = [config.NumLayers, blocks, blockSize, config.NumKeyValueHeads, config.HeadDim];
        // Zeros, not empty: padded and released table entries point at the null block, whose
        // keys are masked out, and a masked NaN would still poison the softmax.
        _keys = torch.zeros(shape, dtype, device);
        _values = torch.zeros(shape, dtype, device);
        _layerKeys = Enumerable.Range(0, config.NumLayers).Select(i => _keys[i]).ToArray();
        _layerValues = Enumerable.Range(0, config.NumLayers).Select(i => _values[i]).ToArray();
        long slots = (long)blocks * blockSize;
        _flatKeys = _layerKeys.Select(k => k.view(slots, config.NumKeyValueHeads, config.HeadDim)).ToArray();
        _flatValues = _layerValues.Select(v => v.view(slots, config.NumKeyValueHeads, config.HeadDim)).ToArray();
        Bytes = 2 * _keys.NumberOfElements * _keys.ElementSize;
    }

    /// <summary>Blocks, the null block included.</summary>
    public int Blocks { get; }
    public int BlockSize { get; }
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

    /// <summary>Writes the rows' keys and values [N, kv heads, head dim] at their token slots [N] (block · block size + offset).</summary>
    public void Write(int layer, Tensor keys, Tensor values, Tensor slots)
    {
        _flatKeys[layer].index_copy_(0, slots, keys);
        _flatValues[layer].index_copy_(0, slots, values);
    }

    /// <summary>
    /// The first <paramref name="length"/> keys and values of each row's block table
    /// <paramref name="tables"/> [R, blocks per row], as [R, kv heads, length, head dim].
    /// </summary>
    public (Tensor Keys, Tensor Values) Gather(int layer, Tensor tables, int length)
    {
        long rows = tables.shape[0], perRow = tables.shape[1];
        var flat = tables.view(-1);
        return (Gathered(_layerKeys[layer]), Gathered(_layerValues[layer]));

        Tensor Gathered(Tensor pool)
        {
            var blocks = pool.index_select(0, flat);                                 // [R·B, block size, Hkv, D]
            return blocks.view(rows, perRow * BlockSize, pool.shape[2], pool.shape[3]) // [R, B·block size, Hkv, D]
                .narrow(1, 0, length)                                                // [R, length, Hkv, D]
                .transpose(1, 2);                                                    // [R, Hkv, length, D]
        }
    }

    public void Dispose()
    {
        foreach (var t in _flatKeys.Concat(_flatValues).Concat(_layerKeys).Concat(_layerValues)) t.Dispose();
        _keys.Dispose();
        _values.Dispose();
    }
}
