namespace TuneGateway.Engine.Inference.Paging;

/// <summary>One sequence's hold on the KV cache: its block table and the hashes of its full blocks.</summary>
public sealed class SequenceBlocks
{
    internal SequenceBlocks(KvScope scope) => Scope = scope;

    public KvScope Scope { get; }
    /// <summary>Block ids in position order; <see cref="BlockPool.NullBlock"/> where a sliding window released one.</summary>
    internal List<int> Table { get; } = [];
    /// <summary>Hashes of the first full blocks, in order (the chain so far).</summary>
    internal List<BlockHash> Hashes { get; } = [];
    /// <summary>Per table entry, the variants its tokens were computed under (bit flags of <see cref="KvCacheManager.VariantOf"/>).</summary>
    internal List<byte> Variants { get; } = [];
    /// <summary>Table entries before this one were released (all windowed layers are past them).</summary>
    internal int Released { get; set; }

    public int BlockCount => Table.Count;
    /// <summary>Blocks this sequence still holds (released ones not counted).</summary>
    public int HeldCount => Table.Count - Released;

    /// <summary>The block table as a chunk carries it.</summary>
    public int[] ToArray() => [.. Table];
}

/// <summary>
/// Block tables of the scheduler's sequences over one <see cref="BlockPool"/>, with automatic
/// prefix caching keyed by <see cref="KvScope"/>: a starting sequence shares the longest chain of
/// cached full blocks its tokens hash to, and every block a sequence fills is registered for
/// later ones. Blocks are taken as a sequence grows, never for its whole possible length.
/// </summary>
public sealed class KvCacheManager
{
    private readonly BlockPool _pool;
    private readonly Dictionary<KvScope, BlockHash> _roots = [];
    private readonly int? _lengthThreshold;

    /// <param name="slidingWindow">
    /// Set when every layer attends within this window: blocks that fall wholly out of it are
    /// released while the sequence runs. Null when any layer attends to the whole sequence (its
    /// keys must stay), as in Gemma 2/3, whose global layers interleave the local ones.
    /// </param>
    /// <param name="lengthThreshold">
    /// Set when keys also depend on whether the sequence was longer than this when they were
    /// computed (<see cref="Models.ModelConfig.KeyLengthThreshold"/>, longrope): blocks computed on
    /// either side are different content, and a block mixing both is never shared.
    /// </param>
    public KvCacheManager(BlockPool pool, int blockSize, bool prefixCaching, int? slidingWindow, int? lengthThreshold = null)
    {
        _lengthThreshold = lengthThreshold;
        _pool = pool;
        BlockSize = blockSize;
        PrefixCaching = prefixCaching;
        SlidingWindow = slidingWindow;
    }

    public int BlockSize { get; }
    public bool PrefixCaching { get; }
    public int? SlidingWindow { get; }
    public BlockPool Pool => _pool;

    /// <summary>Prompt tokens looked up in the prefix cache (vLLM's prefix_cache_queries).</summary>
    public long QueriedTokens { get; private set; }
    /// <summary>Of those, tokens whose keys and values were found cached.</summary>
    public long HitTokens { get; private set; }

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    public SequenceBlocks Open(KvScope scope) => new(scope);

    /// <summary>The variant of keys computed while the sequence is <paramref name="sequenceLength"/> long: 1, or 2 past the length threshold.</summary>
    internal byte VariantOf(int sequenceLength) => _lengthThreshold is int t && sequenceLength > t ? (byte)2 : (byte)1;

    /// <summary>
    /// The most blocks one sequence of <paramref name="tokens"/> tokens ever holds, prefilled in
    /// chunks of up to <paramref name="chunkTokens"/>: all of them, or with a sliding window, the
    /// window plus the chunk being computed and the block it starts in.
    /// </summary>
    public int PeakBlocks(int tokens, int chunkTokens)
    {
        int all = BlocksFor(tokens);
        return SlidingWindow is int w ? Math.Min(all, BlocksFor(w + Math.Min(chunkTokens, tokens)) + 1) : all;
    }

    /// <summary>
    /// Starts a sequence over <paramref name="tokens"/> (everything it has so far: a prompt, or a
    /// preempted sequence's prompt and output): shares the longest cached prefix when
    /// <paramref name="lookup"/> and takes blocks for the first <paramref name="firstTokens"/>
    /// tokens after it, leaving <paramref name="reserve"/> blocks free. Returns false, holding
    /// nothing, when that does not fit. <paramref name="cached"/> is how many tokens need no
    /// computing; at least the last token is always computed, since its logits are needed. The
    /// sequence's tokens are computed as one prompt of their full length, so only blocks computed
    /// under that length's variant match.
    /// </summary>
    public bool TryStart(SequenceBlocks sequence, IReadOnlyList<int> tokens, bool lookup, int firstTokens, int reserve, out int cached)
    {
        if (sequence.Table.Count > 0) throw new InvalidOperationException("The sequence already holds blocks.");
        var hits = new List<(int Block, BlockHash Hash)>();
        byte variant = VariantOf(tokens.Count);
        if (lookup && PrefixCaching)
        {
            var parent = Root(sequence.Scope);
            int candidates = (tokens.Count - 1) / BlockSize;
            for (int b = 0; b < candidates; b++)
            {
                var hash = BlockHash.Next(parent, TokensOf(tokens, b), variant);
                if (_pool.Find(hash) is not int block) break;
                hits.Add((block, hash));
                parent = hash;
            }
        }

        int hitTokens = hits.Count * BlockSize;
        int hold = hitTokens + Math.Min(tokens.Count - hitTokens, Math.Max(1, firstTokens));
        int needed = BlocksFor(hold) - hits.Count;
        int revived = hits.Count(h => _pool.References(h.Block) == 0);      // cached but free: sharing takes them off the free queue
        cached = 0;
        if (_pool.FreeCount - revived - needed < reserve) return false;

        foreach (var (block, hash) in hits)
        {
            _pool.Share(block);
            sequence.Table.Add(block);
            sequence.Hashes.Add(hash);
            sequence.Variants.Add(variant);
        }
        if (!_pool.TryAllocate(needed, sequence.Table)) throw new InvalidOperationException("The block pool lost free blocks between check and allocation.");
        if (lookup && PrefixCaching)
        {
            QueriedTokens += tokens.Count;
            HitTokens += hitTokens;
        }
        cached = hitTokens;
        return true;
    }

    /// <summary>Grows the table to hold <paramref name="tokens"/> tokens; false (nothing taken) when the blocks are not free.</summary>
    public bool TryHold(SequenceBlocks sequence, int tokens)
    {
        int more = BlocksFor(tokens) - sequence.Table.Count;
        return more <= 0 || _pool.TryAllocate(more, sequence.Table);
    }

    /// <summary>How many tokens the sequence could hold if it took every free block.</summary>
    public int HoldableTokens(SequenceBlocks sequence) => (sequence.Table.Count + _pool.FreeCount) * BlockSize;

    /// <summary>
    /// Registers the blocks the sequence has filled: positions <paramref name="from"/> to
    /// <paramref name="computed"/> of <paramref name="tokens"/> were just computed, as a sequence
    /// of <paramref name="sequenceLength"/> tokens. Then, with a sliding window, releases blocks
    /// no later query can see.
    /// </summary>
    public void Commit(SequenceBlocks sequence, IReadOnlyList<int> tokens, int from, int computed, int sequenceLength)
    {
        if (PrefixCaching)
        {
            while (sequence.Variants.Count < sequence.Table.Count) sequence.Variants.Add(0);
            byte variant = VariantOf(sequenceLength);
            for (int b = from / BlockSize; b * BlockSize < computed; b++) sequence.Variants[b] |= variant;
            int full = computed / BlockSize;
            for (int b = sequence.Hashes.Count; b < full; b++)
            {
                var parent = b == 0 ? Root(sequence.Scope) : sequence.Hashes[b - 1];
                // A block computed partly under each variant (3) gets a hash no lookup asks for.
                var hash = BlockHash.Next(parent, TokensOf(tokens, b), sequence.Variants[b]);
                sequence.Hashes.Add(hash);
                if (sequence.Table[b] != BlockPool.NullBlock) _pool.Register(sequence.Table[b], hash);
            }
        }

        if (SlidingWindow is int window)
        {
            // The next query is at position `computed`; it and every later one see keys from
            // computed - window + 1 on, so a block ending before that is done with.
            int firstNeeded = computed - window + 1;
            while (sequence.Released < sequence.Table.Count && (sequence.Released + 1) * BlockSize <= firstNeeded)
            {
                _pool.Release(sequence.Table[sequence.Released]);
                sequence.Table[sequence.Released] = BlockPool.NullBlock;
                sequence.Released++;
            }
        }
    }

    /// <summary>Gives every block back (cached ones stay cached until evicted) and forgets the chain.</summary>
    public void Free(SequenceBlocks sequence)
    {
        _pool.Release(sequence.Table);
        sequence.Table.Clear();
        sequence.Hashes.Clear();
        sequence.Variants.Clear();
        sequence.Released = 0;
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
