using TorchSharp;
using TuneGateway.Engine.Inference.Paging;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// A model with its paged KV cache: runs forward passes over chunks of sequences whose tokens
/// live in the cache blocks their chunks list. <see cref="Pools"/> hand the blocks out, one pool
/// per attention group (<see cref="KvGroup"/>): the scheduler takes them as sequences grow, and
/// callers without a scheduler (tests, benchmarks) reserve whole sequences with
/// <see cref="ReserveSequence"/>. Not thread-safe: one caller (the scheduler's loop) drives it.
/// </summary>
public sealed class ModelRunner : IDisposable
{
    private ModelRunner(CausalLanguageModel model, int maxLength, IReadOnlyList<int> blocks, int blockSize)
    {
        if (maxLength > model.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(maxLength), $"The context length {maxLength} exceeds the model's {model.MaxPositions} positions.");
        if (maxLength < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), "The context length must be positive.");
        Model = model;
        MaxLength = maxLength;
        var groups = KvGroup.Of(model.Config);
        if (blocks.Count != groups.Length)
            throw new ArgumentException($"The model has {groups.Length} attention groups; {blocks.Count} block counts were given.", nameof(blocks));
        Cache = new PagedKvCache(model.Config, groups, blocks, blockSize, model.Dtype, model.Device);
        Pools = blocks.Select(b => new BlockPool(b)).ToArray();
    }

    /// <summary>A cache that holds <paramref name="sequences"/> sequences of <paramref name="maxLength"/> tokens at once.</summary>
    public ModelRunner(CausalLanguageModel model, int sequences, int maxLength)
        : this(model, maxLength, Enumerable.Repeat(1 + sequences * PagedKvCache.BlocksFor(maxLength, PagedKvCache.DefaultBlockSize), KvGroup.Of(model.Config).Length).ToArray(),
            PagedKvCache.DefaultBlockSize)
    {
    }

    /// <summary>A cache of <paramref name="blocks"/> blocks (the null block included) in every attention group, for sequences of up to <paramref name="maxLength"/> tokens.</summary>
    public static ModelRunner WithBlocks(CausalLanguageModel model, int maxLength, int blocks, int blockSize = PagedKvCache.DefaultBlockSize) =>
        new(model, maxLength, Enumerable.Repeat(blocks, KvGroup.Of(model.Config).Length).ToArray(), blockSize);

    /// <summary>A cache with the given blocks (the null block included) per attention group, in <see cref="KvGroup.Of"/>'s order.</summary>
    public static ModelRunner WithGroupBlocks(CausalLanguageModel model, int maxLength, IReadOnlyList<int> blocks, int blockSize = PagedKvCache.DefaultBlockSize) =>
        new(model, maxLength, blocks, blockSize);

    public CausalLanguageModel Model { get; }
    public PagedKvCache Cache { get; }
    /// <summary>Per attention group (<see cref="PagedKvCache.Groups"/>), its blocks' bookkeeping.</summary>
    public IReadOnlyList<BlockPool> Pools { get; }
    public int MaxLength { get; }
    public int BlockSize => Cache.BlockSize;

    /// <summary>Blocks for one sequence of up to <paramref name="tokens"/> tokens (default: the context length) in every group, outside any scheduler.</summary>
    public BlockTables ReserveSequence(int? tokens = null)
    {
        int count = PagedKvCache.BlocksFor(tokens ?? MaxLength, BlockSize);
        if (Pools.Any(p => p.FreeCount < count))
            throw new InvalidOperationException($"The KV cache has {Pools.Min(p => p.FreeCount)} free blocks; a sequence of {tokens ?? MaxLength} tokens needs {count}.");
        return new BlockTables(Pools.Select(p =>
        {
            var blocks = new List<int>();
            p.TryAllocate(count, blocks);
            return blocks.ToArray();
        }).ToArray());
    }

    /// <summary>
    /// Float32 logits [chunks wanting logits, vocab] on the model's device; the caller disposes
    /// them. Chunks with an <see cref="SequenceChunk.Adapter"/> index use that adapter of
    /// <paramref name="adapters"/>.
    /// </summary>
    public Tensor Forward(IReadOnlyList<SequenceChunk> chunks, LoraWorkingSet? adapters = null)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var batch = ForwardBatch.Build(chunks, MaxLength, BlockSize, Model.Device);
        IProjectionDelta? delta = null;
        if (adapters is not null)
        {
            var rowAdapter = batch.RowChunk.Select(c => chunks[c].Adapter).ToArray();
            delta = adapters.ForRows(rowAdapter, Model.Dtype, Model.Device);
        }
        else if (chunks.Any(c => c.Adapter >= 0))
        {
            throw new ArgumentException("A chunk names an adapter but no working set was given.", nameof(chunks));
        }
        return Model.Forward(batch.TokenIds, batch.Positions, batch.SequenceLengths, new PagedAttentionBackend(batch, Cache), delta, batch.LogitRows).MoveToOuterDisposeScope();
    }

    /// <summary>One forward pass and one sampled token per chunk that wants logits.</summary>
    public SampledToken[] Step(IReadOnlyList<SequenceChunk> chunks, IReadOnlyList<RowSampling> sampling, LoraWorkingSet? adapters = null,
        List<PromptScores>? scores = null) =>
        Step(chunks, () => sampling, adapters, scores);

    /// <summary>
    /// One forward pass, then the rows' sampling settings (asked for only after the forward, so that
    /// work they wait on, such as constrained rows' masks, overlaps it), then one token per row that
    /// samples. Chunks with <see cref="SequenceChunk.ScoreTargets"/> also get their prompt scores,
    /// added to <paramref name="scores"/> in chunk order.
    /// </summary>
    public SampledToken[] Step(IReadOnlyList<SequenceChunk> chunks, Func<IReadOnlyList<RowSampling>> sampling, LoraWorkingSet? adapters = null,
        List<PromptScores>? scores = null)
    {
        using var logits = Forward(chunks, adapters);
        var rows = sampling();
        using var noGrad = torch.no_grad();
        if (!chunks.Any(c => c.ScoreTargets.Length > 0)) return Sampler.Sample(logits, rows);

        using var scope = torch.NewDisposeScope();
        var (sampleRows, scored) = PromptScorer.SplitRows(chunks);
        (scores ?? []).AddRange(PromptScorer.Score(logits, chunks, scored));
        return sampleRows.Length == 0 ? [] : Sampler.Sample(logits.index_select(0, torch.tensor(sampleRows, device: logits.device)), rows);
    }

    public void Dispose() => Cache.Dispose();
}
