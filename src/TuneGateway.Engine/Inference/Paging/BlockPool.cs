namespace TuneGateway.Engine.Inference.Paging;

/// <summary>
/// The KV cache's blocks as a resource: reference counts, a free queue in eviction order, and the
/// prefix cache's map from a block's content hash to the block holding it. No tensors: the
/// tensors live in <see cref="PagedKvCache"/>, indexed by the block ids handed out here.
/// </summary>
/// <remarks>
/// A block whose last reference is released goes to the tail of the free queue and keeps its
/// hash, so a later request can take it back (a prefix-cache hit). Allocation takes the head:
/// the block released longest ago, evicting its hash. Sequences release their blocks last to
/// first, so a prefix's deep blocks leave before its first ones, which more requests share.
/// Block 0 is never handed out: it is the null block that pads block tables and stands in for
/// blocks a sliding window has released. Not thread-safe: the scheduler's thread owns it.
/// </remarks>
public sealed class BlockPool
{
    public const int NullBlock = 0;

    private readonly int[] _references;
    private readonly BlockHash?[] _hashOf;
    private readonly LinkedListNode<int>?[] _freeNode;
    private readonly LinkedList<int> _free = new();
    private readonly Dictionary<BlockHash, int> _cached = [];

    /// <param name="blocks">Blocks in the cache, the null block included.</param>
    public BlockPool(int blocks)
    {
        if (blocks < 2) throw new ArgumentOutOfRangeException(nameof(blocks), "The KV cache needs at least one block besides the null block.");
        _references = new int[blocks];
        _hashOf = new BlockHash?[blocks];
        _freeNode = new LinkedListNode<int>?[blocks];
        for (int b = 1; b < blocks; b++) _freeNode[b] = _free.AddLast(b);
    }

    /// <summary>Blocks that can hold tokens (all but the null block).</summary>
    public int Capacity => _references.Length - 1;

    /// <summary>Blocks no sequence holds: never used, or cached and evictable.</summary>
    public int FreeCount => _free.Count;

    /// <summary>Blocks held by at least one sequence.</summary>
    public int UsedCount => Capacity - _free.Count;

    /// <summary>Blocks whose content is known by hash (held or evictable).</summary>
    public int CachedCount => _cached.Count;

    public int References(int block) => _references[block];

    /// <summary>
    /// Takes <paramref name="count"/> free blocks, evicting the least recently released cached
    /// ones, or none at all when fewer are free.
    /// </summary>
    public bool TryAllocate(int count, List<int> into)
    {
        if (count > _free.Count) return false;
        for (int i = 0; i < count; i++)
        {
            int block = _free.First!.Value;
            Unfree(block);
            if (_hashOf[block] is { } hash)
            {
                _cached.Remove(hash);
                _hashOf[block] = null;
            }
            _references[block] = 1;
            into.Add(block);
        }
        return true;
    }

    /// <summary>The cached block holding <paramref name="hash"/>, if any (no reference taken).</summary>
    public int? Find(BlockHash hash) => _cached.TryGetValue(hash, out int block) ? block : null;

    /// <summary>Takes a reference on a cached block found by <see cref="Find"/>.</summary>
    public void Share(int block)
    {
        if (block == NullBlock) throw new ArgumentException("The null block cannot be shared.", nameof(block));
        if (_references[block]++ == 0) Unfree(block);
    }

    /// <summary>
    /// Records that a held, full block holds the content <paramref name="hash"/> names. When
    /// another block already holds it (two sequences computed the same prefix at once), the
    /// first stays the cached one and this block stays private to its sequence.
    /// </summary>
    public void Register(int block, BlockHash hash)
    {
        if (_references[block] == 0) throw new InvalidOperationException($"Block {block} is not held; only a computed block can be cached.");
        if (_hashOf[block] is not null || _cached.ContainsKey(hash)) return;
        _cached[hash] = block;
        _hashOf[block] = hash;
    }

    /// <summary>Drops one reference on each block, last to first; blocks nobody holds become free (and stay cached).</summary>
    public void Release(IReadOnlyList<int> blocks)
    {
        for (int i = blocks.Count - 1; i >= 0; i--) Release(blocks[i]);
    }

    public void Release(int block)
    {
        if (block == NullBlock) return;
        if (_references[block] <= 0) throw new InvalidOperationException($"Block {block} is released more often than it was taken.");
        if (--_references[block] == 0) _freeNode[block] = _free.AddLast(block);
    }

    private void Unfree(int block)
    {
        _free.Remove(_freeNode[block]!);
        _freeNode[block] = null;
    }
}
