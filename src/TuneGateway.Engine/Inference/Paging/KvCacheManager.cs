namespace TuneGateway.Engine.Inference.Paging;

/// <summary>
/// One sequence's hold on the KV cache: a block table per attention group, and the hashes of
/// its full blocks (one chain for all groups: a hash names content, not storage).
/// </summary>
public sealed class SequenceBlocks
{
    internal SequenceBlocks(KvScope scope, int groups)
    {
        Scope = scope;
        Groups = Enumerable.Range(0, groups).Select(_ => new GroupTable()).ToArray();
    }

    public KvScope Scope { get; }
    /// <summary>Per group, block ids in position order; every group's table has the same length.</summary>
    internal GroupTable[] Groups { get; }
    /// <summary>Hashes of the first full blocks, in order (the chain so far).</summary>
    internal List<BlockHash> Hashes { get; } = [];
    /// <summary>Per block position, the variants its tokens were computed under (bit flags of <see cref="KvCacheManager.VariantOf"/>).</summary>
    internal List<byte> Variants { get; } = [];

    public int BlockCount => Groups[0].Table.Count;
    /// <summary>Blocks this sequence still holds, over all groups (released ones not counted).</summary>
    public int HeldCount => Groups.Sum(g => g.Table.Count - g.Released);

    /// <summary>The block tables as a chunk carries them.</summary>
    public BlockTables ToTables() => new(Groups.Select(g => g.Table.ToArray()).ToArray());

    internal sealed class GroupTable
    {
        /// <summary><see cref="BlockPool.NullBlock"/> where the group's window released a block.</summary>
        public List<int> Table { get; } = [];
        /// <summary>Entries before this one were released.</summary>
        public int Released { get; set; }
    }
}

/// <summary>
/// Block tables of the scheduler's sequences, with automatic prefix caching keyed by
/// <see cref="KvScope"/>: a starting sequence shares the longest chain of cached full blocks its
/// tokens hash to, and every block a sequence fills is registered for later ones. Blocks are
/// taken as a sequence grows, never for its whole possible length.
/// </summary>
/// <remarks>
/// Each attention group (<see cref="KvGroup"/>: the layers that share a sliding window, or see
/// the whole sequence) has a pool of its own, so a model mixing local and global layers (Gemma
/// 2/3) gives back its local layers' blocks once they fall out of the window while its global
/// layers keep theirs. A block position is held in every group or none (released ones aside),
/// and a prefix is shared only as far as every group still has it cached.
/// </remarks>
public sealed class KvCacheManager
{
    private readonly BlockPool[] _pools;
    private readonly int?[] _windows;
    private readonly Dictionary<KvScope, BlockHash> _roots = [];
    private readonly int? _lengthThreshold;

    /// <param name="slidingWindow">The window of the one group's layers (null: they see the whole sequence).</param>
    /// <param name="lengthThreshold">
    /// Set when keys also depend on whether the sequence was longer than this when they were
    /// computed (<see cref="Models.ModelConfig.KeyLengthThreshold"/>, longrope): blocks computed on
    /// either side are different content, and a block mixing both is never shared.
    /// </param>
    public KvCacheManager(BlockPool pool, int blockSize, bool prefixCaching, int? slidingWindow, int? lengthThreshold = null)
        : this([pool], [slidingWindow], blockSize, prefixCaching, lengthThreshold)
    {
    }

    /// <summary>One pool per attention group, with that group's window.</summary>
    public KvCacheManager(IReadOnlyList<BlockPool> pools, IReadOnlyList<int?> windows, int blockSize, bool prefixCaching, int? lengthThreshold = null)
    {
        if (pools.Count == 0 || pools.Count != windows.Count) throw new ArgumentException("Every attention group needs a pool and a window (or none).");
        _pools = [.. pools];
        _windows = [.. windows];
        _lengthThreshold = lengthThreshold;
        BlockSize = blockSize;
        PrefixCaching = prefixCaching;
    }

    public int BlockSize { get; }
    public bool PrefixCaching { get; }
    public IReadOnlyList<BlockPool> Pools => _pools;

    /// <summary>Prompt tokens looked up in the prefix cache (vLLM's prefix_cache_queries).</summary>
    public long QueriedTokens { get; private set; }
    /// <summary>Of those, tokens whose keys and values were found cached.</summary>
    public long HitTokens { get; private set; }

    public int BlocksFor(int tokens) => PagedKvCache.BlocksFor(tokens, BlockSize);

    public SequenceBlocks Open(KvScope scope) => new(scope, _pools.Length);

    /// <summary>The variant of keys computed while the sequence is <paramref name="sequenceLength"/> long: 1, or 2 past the length threshold.</summary>
    internal byte VariantOf(int sequenceLength) => _lengthThreshold is int t && sequenceLength > t ? (byte)2 : (byte)1;

    /// <summary>
    /// True when one sequence of <paramref name="tokens"/> tokens, prefilled in chunks of up to
    /// <paramref name="chunkTokens"/>, fits every group's pool; <paramref name="peak"/> and
    /// <paramref name="capacity"/> are those of the first group it would not fit (or group 0's).
    /// </summary>
    public bool Fits(int tokens, int chunkTokens, out int peak, out int capacity)
    {
        for (int g = 0; g < _pools.Length; g++)
        {
            peak = PeakBlocks(g, tokens, chunkTokens);
            capacity = _pools[g].Capacity;
            if (peak > capacity) return false;
        }
        peak = PeakBlocks(0, tokens, chunkTokens);
        capacity = _pools[0].Capacity;
        return true;
    }

    /// <summary>
    /// The most blocks of group <paramref name="group"/> one sequence of <paramref name="tokens"/>
    /// tokens ever holds: all of them, or with a sliding window, the window plus the chunk being
    /// computed and the block it starts in.
    /// </summary>
    public int PeakBlocks(int group, int tokens, int chunkTokens) => PeakBlocks(_windows[group], BlockSize, tokens, chunkTokens);

    /// <summary><see cref="PeakBlocks(int, int, int)"/> for a group of window <paramref name="window"/>.</summary>
    public static int PeakBlocks(int? window, int blockSize, int tokens, int chunkTokens)
    {
        int all = PagedKvCache.BlocksFor(tokens, blockSize);
        return window is int w ? Math.Min(all, PagedKvCache.BlocksFor(w + Math.Min(chunkTokens, tokens), blockSize) + 1) : all;
    }

    /// <summary>
    /// Starts a sequence over <paramref name="tokens"/> (everything it has so far: a prompt, or a
    /// preempted sequence's prompt and output): shares the longest cached prefix when
    /// <paramref name="lookup"/> and takes blocks for the first <paramref name="firstTokens"/>
    /// tokens after it, leaving <paramref name="reserve"/> blocks free in each group. Returns
    /// false, holding nothing, when that does not fit. <paramref name="cached"/> is how many
    /// tokens need no computing; at least the last token is always computed, since its logits
    /// are needed. The tokens are computed as one prompt of their full length, so only blocks
    /// computed under that length's variant match.
    /// </summary>
    public bool TryStart(SequenceBlocks sequence, IReadOnlyList<int> tokens, bool lookup, int firstTokens, int reserve, out int cached)
    {
        if (sequence.BlockCount > 0) throw new InvalidOperationException("The sequence already holds blocks.");
        var hits = new List<(BlockHash Hash, int[] Blocks)>();
        byte variant = VariantOf(tokens.Count);
        if (lookup && PrefixCaching)
        {
            var parent = Root(sequence.Scope);
            int candidates = (tokens.Count - 1) / BlockSize;
            for (int b = 0; b < candidates; b++)
            {
                var hash = BlockHash.Next(parent, TokensOf(tokens, b), variant);
                var blocks = new int[_pools.Length];
                bool everywhere = true;
                for (int g = 0; g < _pools.Length && everywhere; g++)
                {
                    if (_pools[g].Find(hash) is int block) blocks[g] = block;
                    else everywhere = false;
                }
                if (!everywhere) break;
                hits.Add((hash, blocks));
                parent = hash;
            }
        }

        int hitTokens = hits.Count * BlockSize;
        int hold = hitTokens + Math.Min(tokens.Count - hitTokens, Math.Max(1, firstTokens));
        int needed = BlocksFor(hold) - hits.Count;
        cached = 0;
        for (int g = 0; g < _pools.Length; g++)
        {
            int revived = hits.Count(h => _pools[g].References(h.Blocks[g]) == 0);   // cached but free: sharing takes them off the free queue
            if (_pools[g].FreeCount - revived - needed < reserve) return false;
        }

        foreach (var (hash, blocks) in hits)
        {
            for (int g = 0; g < _pools.Length; g++)
            {
                _pools[g].Share(blocks[g]);
                sequence.Groups[g].Table.Add(blocks[g]);
            }
            sequence.Hashes.Add(hash);
            sequence.Variants.Add(variant);
        }
        for (int g = 0; g < _pools.Length; g++)
        {
            if (!_pools[g].TryAllocate(needed, sequence.Groups[g].Table))
                throw new InvalidOperationException("A block pool lost free blocks between check and allocation.");
        }
        if (lookup && PrefixCaching)
        {
            QueriedTokens += tokens.Count;
            HitTokens += hitTokens;
        }
        cached = hitTokens;
        return true;
    }

    /// <summary>Grows the tables to hold <paramref name="tokens"/> tokens; false (nothing taken) when the blocks are not free in every group.</summary>
    public bool TryHold(SequenceBlocks sequence, int tokens)
    {
        int more = BlocksFor(tokens) - sequence.BlockCount;
        if (more <= 0) return true;
        if (_pools.Any(p => p.FreeCount < more)) return false;
        for (int g = 0; g < _pools.Length; g++) _pools[g].TryAllocate(more, sequence.Groups[g].Table);
        return true;
    }

    /// <summary>How many tokens the sequence could hold if it took every free block (of the group with the fewest).</summary>
    public int HoldableTokens(SequenceBlocks sequence) => (sequence.BlockCount + _pools.Min(p => p.FreeCount)) * BlockSize;

    /// <summary>
    /// Registers the blocks the sequence has filled: positions <paramref name="from"/> to
    /// <paramref name="computed"/> of <paramref name="tokens"/> were just computed, as a sequence
    /// of <paramref name="sequenceLength"/> tokens. Then each windowed group releases the blocks
    /// no later query can see.
    /// </summary>
    public void Commit(SequenceBlocks sequence, IReadOnlyList<int> tokens, int from, int computed, int sequenceLength)
    {
        if (PrefixCaching)
        {
            while (sequence.Variants.Count < sequence.BlockCount) sequence.Variants.Add(0);
            byte variant = VariantOf(sequenceLength);
            for (int b = from / BlockSize; b * BlockSize < computed; b++) sequence.Variants[b] |= variant;
            int full = computed / BlockSize;
            for (int b = sequence.Hashes.Count; b < full; b++)
            {
                var parent = b == 0 ? Root(sequence.Scope) : sequence.Hashes[b - 1];
                // A block computed partly under each variant (3) gets a hash no lookup asks for.
                var hash = BlockHash.Next(parent, TokensOf(tokens, b), sequence.Variants[b]);
                sequence.Hashes.Add(hash);
                for (int g = 0; g < _pools.Length; g++)
                {
                    int block = sequence.Groups[g].Table[b];
                    if (block != BlockPool.NullBlock) _pools[g].Register(block, hash);
                }
            }
        }

        for (int g = 0; g < _pools.Length; g++)
        {
            if (_windows[g] is not int window) continue;
            // The next query is at position `computed`; it and every later one see keys from
            // computed - window + 1 on, so a block ending before that is done with.
            var group = sequence.Groups[g];
            int firstNeeded = computed - window + 1;
            while (group.Released < group.Table.Count && (group.Released + 1) * BlockSize <= firstNeeded)
            {
                _pools[g].Release(group.Table[group.Released]);
                group.Table[group.Released] = BlockPool.NullBlock;
                group.Released++;
            }
        }
    }

    /// <summary>Gives every block back (cached ones stay cached until evicted) and forgets the chain.</summary>
    public void Free(SequenceBlocks sequence)
    {
        for (int g = 0; g < _pools.Length; g++)
        {
            var group = sequence.Groups[g];
            _pools[g].Release(group.Table);
            group.Table.Clear();
            group.Released = 0;
        }
        sequence.Hashes.Clear();
        sequence.Variants.Clear();
    }

    private BlockHash Root(KvScope scope)
    {
        if (!_roots.TryGetValue(scope, out var root)) _roots[scope] = root = BlockHash.Root(scope);
        return root;
    }

    private ReadOnlySpan<int> TokensOf(IReadOnlyList<int> tokens, int block)
    {
        var span = new int[BlockSize];
        for (int i = 0; i < BlockSize; i++) span[i] = tokens[block * BlockSize + i];
        return span;
    }
}
