using TorchSharp;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference.Paging;

/// <summary>
/// The key/value tensors, allocated once as fixed-size blocks of <see cref="BlockSize"/> tokens:
/// one pool per <see cref="KvGroup"/> ([group layers, blocks, block size, kv heads, head dim]).
/// A sequence's tokens live in the blocks its group's block table lists, in order: token p is at
/// offset p % BlockSize of block table[p / BlockSize]. Which blocks are free, shared or cached
/// is <see cref="BlockPool"/>'s business; this class only stores and gathers.
/// </summary>
public sealed class PagedKvCache : IDisposable
{
    public const int DefaultBlockSize = 16;

    private readonly Tensor[] _keys;        // per group: [group layers, blocks, block size, kv heads, head dim]
    private readonly Tensor[] _values;
    private readonly int[] _groupOfLayer;
    private readonly Tensor[] _layerKeys;   // per model layer: [blocks, block size, kv heads, head dim] views
    private readonly Tensor[] _layerValues;
    private readonly Tensor[] _flatKeys;    // per model layer: [blocks · block size, kv heads, head dim] views, one row per token slot
    private readonly Tensor[] _flatValues;

    /// <param name="blocks">Per group, its blocks (the null block included).</param>
    public PagedKvCache(ModelConfig config, IReadOnlyList<KvGroup> groups, IReadOnlyList<int> blocks, int blockSize, ScalarType dtype, Device device)
    {
        if (groups.Count != blocks.Count) throw new ArgumentException("Every attention group needs a block count.", nameof(blocks));
        if (blocks.Any(b => b < 2)) throw new ArgumentOutOfRangeException(nameof(blocks), "The KV cache needs at least one block besides the null block.");
        if (blockSize < 1) throw new ArgumentOutOfRangeException(nameof(blockSize), "The block size must be positive.");
        Groups = [.. groups];
        BlockSize = blockSize;
        _groupOfLayer = new int[config.NumLayers];
        _keys = new Tensor[groups.Count];
        _values = new Tensor[groups.Count];
        _layerKeys = new Tensor[config.NumLayers];
        _layerValues = new Tensor[config.NumLayers];
        _flatKeys = new Tensor[config.NumLayers];
        _flatValues = new Tensor[config.NumLayers];
        for (int g = 0; g < groups.Count; g++)
        {
            long[] shape = [groups[g].Layers.Count, blocks[g], blockSize, config.NumKeyValueHeads, config.HeadDim];
            // Zeros, not empty: padded and released table entries point at the null block, whose
            // keys are masked out, and a masked NaN would still poison the softmax.
            _keys[g] = torch.zeros(shape, dtype, device);
            _values[g] = torch.zeros(shape, dtype, device);
            long slots = (long)blocks[g] * blockSize;
            for (int i = 0; i < groups[g].Layers.Count; i++)
            {
                int layer = groups[g].Layers[i];
                _groupOfLayer[layer] = g;
                _layerKeys[layer] = _keys[g][i];
                _layerValues[layer] = _values[g][i];
                _flatKeys[layer] = _layerKeys[layer].view(slots, config.NumKeyValueHeads, config.HeadDim);
                _flatValues[layer] = _layerValues[layer].view(slots, config.NumKeyValueHeads, config.HeadDim);
            }
        }
        Bytes = _keys.Sum(k => 2 * k.NumberOfElements * k.ElementSize);
    }

    public IReadOnlyList<KvGroup> Groups { get; }
    public int BlockSize { get; }
    public long Bytes { get; }

    /// <summary>The group whose pool holds <paramref name="layer"/>'s keys.</summary>
    public int GroupOf(int layer) => _groupOfLayer[layer];

    /// <summary>Cache bytes one token takes across all layers, or across <paramref name="layers"/> of them (keys and values).</summary>
    public static long BytesPerToken(ModelConfig config, ScalarType dtype, int? layers = null) =>
        2L * (layers ?? config.NumLayers) * config.NumKeyValueHeads * config.HeadDim * ElementSize(dtype);

    /// <summary>Blocks that hold <paramref name="tokens"/> tokens.</summary>
    public static int BlocksFor(int tokens, int blockSize) => (tokens + blockSize - 1) / blockSize;

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
        foreach (var t in _flatKeys.Concat(_flatValues).Concat(_layerKeys).Concat(_layerValues).Concat(_keys).Concat(_values)) t.Dispose();
    }
}
