using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Inference.Paging;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Runtime;
using TuneGateway.Engine.Serving;
using static TorchSharp.torch;

namespace TuneGateway.Tests.Engine;

/// <summary>The block pool's bookkeeping: references, eviction order, the cache map.</summary>
public sealed class BlockPoolTests
{
    private static BlockHash Hash(int n) => BlockHash.Next(BlockHash.Root(KvScope.Base("m")), [n]);

    [Fact]
    public void TheNullBlockIsNeverHandedOut()
    {
        var pool = new BlockPool(4);
        var taken = new List<int>();
        Assert.True(pool.TryAllocate(3, taken));
        Assert.DoesNotContain(BlockPool.NullBlock, taken);
        Assert.Equal(3, taken.Distinct().Count());
        Assert.False(pool.TryAllocate(1, taken));
        Assert.Equal(3, taken.Count);
    }

    [Fact]
    public void AnAllocationThatDoesNotFitTakesNothing()
    {
        var pool = new BlockPool(5);
        var taken = new List<int>();
        Assert.False(pool.TryAllocate(5, taken));
        Assert.Empty(taken);
        Assert.Equal(4, pool.FreeCount);
    }

    [Fact]
    public void ReleasedBlocksStayCachedUntilEvictedLeastRecentlyReleasedFirst()
    {
        var pool = new BlockPool(4);
        var a = new List<int>();
        pool.TryAllocate(3, a);
        for (int i = 0; i < 3; i++) pool.Register(a[i], Hash(i));
        // Released last to first: the deepest block of the "prefix" is evicted first.
        pool.Release(a);
        Assert.Equal(3, pool.FreeCount);
        Assert.Equal(3, pool.CachedCount);
        Assert.Equal(a[0], pool.Find(Hash(0)));

        var b = new List<int>();
        pool.TryAllocate(1, b);
        Assert.Equal(a[2], b[0]);
        Assert.Null(pool.Find(Hash(2)));
        Assert.Equal(a[1], pool.Find(Hash(1)));
        Assert.Equal(2, pool.CachedCount);
    }

    [Fact]
    public void SharingAFreeCachedBlockTakesItOffTheFreeQueue()
    {
        var pool = new BlockPool(3);
        var a = new List<int>();
        pool.TryAllocate(1, a);
        pool.Register(a[0], Hash(7));
        pool.Release(a[0]);
        Assert.Equal(2, pool.FreeCount);

        pool.Share(a[0]);
        Assert.Equal(1, pool.FreeCount);
        pool.Share(a[0]);
        Assert.Equal(2, pool.References(a[0]));
        var other = new List<int>();
        Assert.True(pool.TryAllocate(1, other));
        Assert.NotEqual(a[0], other[0]);
        Assert.False(pool.TryAllocate(1, other));
        Assert.Equal(a[0], pool.Find(Hash(7)));
    }

    [Fact]
    public void TheFirstBlockToHoldAContentStaysTheCachedOne()
    {
        var pool = new BlockPool(3);
        var taken = new List<int>();
        pool.TryAllocate(2, taken);
        pool.Register(taken[0], Hash(1));
        pool.Register(taken[1], Hash(1));
        Assert.Equal(taken[0], pool.Find(Hash(1)));
        Assert.Equal(1, pool.CachedCount);
    }

    [Fact]
    public void ReleasingMoreThanWasTakenIsABug()
    {
        var pool = new BlockPool(3);
        var taken = new List<int>();
        pool.TryAllocate(1, taken);
        pool.Release(taken[0]);
        Assert.Throws<InvalidOperationException>(() => pool.Release(taken[0]));
        Assert.Throws<InvalidOperationException>(() => pool.Register(taken[0], Hash(3)));
    }

    [Fact]
    public void HashesChainOverParentAndTokens()
    {
        var root = BlockHash.Root(KvScope.Base("m"));
        Assert.Equal(BlockHash.Next(root, [1, 2]), BlockHash.Next(root, [1, 2]));
        Assert.NotEqual(BlockHash.Next(root, [1, 2]), BlockHash.Next(root, [2, 1]));
        Assert.NotEqual(BlockHash.Next(BlockHash.Next(root, [1, 2]), [3, 4]), BlockHash.Next(BlockHash.Next(root, [9, 9]), [3, 4]));
        Assert.NotEqual(root, BlockHash.Root(new KvScope("m", "a", 1)));
        Assert.NotEqual(BlockHash.Root(new KvScope("m", "a", 1)), BlockHash.Root(new KvScope("m", "a", 2)));
        Assert.NotEqual(BlockHash.Root(new KvScope("m", "a", 1)), BlockHash.Root(new KvScope("m", "b", 1)));
        Assert.NotEqual(BlockHash.Root(KvScope.Base("m")), BlockHash.Root(KvScope.Base("n")));
    }
}

/// <summary>Block tables, prefix sharing by scope and window release, without a model.</summary>
public sealed class KvCacheManagerTests
{
    private static readonly KvScope Base = KvScope.Base("model");
    private static readonly int[] Prompt = Enumerable.Range(100, 20).ToArray();      // 5 blocks of 4

    /// <summary>Computes the rest of the sequence: holds blocks for all its tokens and commits them.</summary>
    private static void Run(KvCacheManager kv, SequenceBlocks s, IReadOnlyList<int> tokens)
    {
        Assert.True(kv.TryHold(s, tokens.Count));
        kv.Commit(s, tokens, 0, tokens.Count, tokens.Count);
    }

    [Fact]
    public void ASecondSequenceSharesTheFullBlocksOfTheFirstButAlwaysComputesItsLastToken()
    {
        var kv = new KvCacheManager(new BlockPool(32), 4, prefixCaching: true, slidingWindow: null);
        var first = kv.Open(Base);
        Assert.True(kv.TryStart(first, Prompt, lookup: true, firstTokens: 64, reserve: 0, out int none));
        Assert.Equal(0, none);
        Run(kv, first, Prompt);

        var second = kv.Open(Base);
        Assert.True(kv.TryStart(second, Prompt, lookup: true, firstTokens: 64, reserve: 0, out int cached));
        // 20 tokens = 5 full blocks, but the last token's logits are needed: 4 blocks (16 tokens) are reused.
        Assert.Equal(16, cached);
        Assert.Equal(first.ToTables().Groups[0][..4], second.ToTables().Groups[0][..4]);
        Assert.NotEqual(first.ToTables().Groups[0][4], second.ToTables().Groups[0][4]);
        Assert.Equal(2, kv.Pools[0].References(first.ToTables().Groups[0][0]));
        Assert.Equal(40, kv.QueriedTokens);
        Assert.Equal(16, kv.HitTokens);
    }

    [Theory]
    [InlineData("adapter", 1)]   // another adapter
    [InlineData("a", 2)]         // another version of the same adapter
    [InlineData(null, 0)]        // the base model
    public void APrefixIsNeverSharedAcrossAdaptersOrTheirVersions(string? adapter, long version)
    {
        var kv = new KvCacheManager(new BlockPool(32), 4, prefixCaching: true, slidingWindow: null);
        var first = kv.Open(new KvScope("model", "a", 1));
        kv.TryStart(first, Prompt, true, 64, 0, out _);
        Run(kv, first, Prompt);

        var other = kv.Open(adapter is null ? Base : new KvScope("model", adapter, version));
        Assert.True(kv.TryStart(other, Prompt, true, 64, 0, out int cached));
        Assert.Equal(0, cached);
        Assert.Empty(first.ToTables().Groups[0].Intersect(other.ToTables().Groups[0]));

        var same = kv.Open(new KvScope("model", "a", 1));
        Assert.True(kv.TryStart(same, Prompt, true, 64, 0, out int reused));
        Assert.Equal(16, reused);
    }

    [Fact]
    public void AFreedSequencesBlocksAreFoundAgainUntilEvicted()
    {
        var kv = new KvCacheManager(new BlockPool(8), 4, prefixCaching: true, slidingWindow: null);
        var first = kv.Open(Base);
        kv.TryStart(first, Prompt, true, 64, 0, out _);
        Run(kv, first, Prompt);
        kv.Free(first);
        Assert.Equal(7, kv.Pools[0].FreeCount);
        Assert.Equal(5, kv.Pools[0].CachedCount);

        var again = kv.Open(Base);
        Assert.True(kv.TryStart(again, Prompt, true, 64, 0, out int cached));
        Assert.Equal(16, cached);
        kv.Free(again);

        // Another prompt of 7 blocks needs every free block: the cached ones are evicted.
        var big = kv.Open(Base);
        var other = Enumerable.Range(500, 28).ToArray();
        Assert.True(kv.TryStart(big, other, true, 64, 0, out _));
        Assert.Equal(0, kv.Pools[0].CachedCount);
    }

    [Fact]
    public void AStartThatDoesNotFitHoldsNothing()
    {
        var kv = new KvCacheManager(new BlockPool(6), 4, prefixCaching: true, slidingWindow: null);
        var s = kv.Open(Base);
        Assert.False(kv.TryStart(s, Prompt, true, 64, reserve: 1, out _));
        Assert.Equal(0, s.BlockCount);
        Assert.Equal(5, kv.Pools[0].FreeCount);
        Assert.True(kv.TryStart(s, Prompt, true, firstTokens: 8, reserve: 1, out _));
        Assert.Equal(2, s.BlockCount);
    }

    [Fact]
    public void WithoutPrefixCachingNothingIsLookedUpOrRegistered()
    {
        var kv = new KvCacheManager(new BlockPool(32), 4, prefixCaching: false, slidingWindow: null);
        var first = kv.Open(Base);
        kv.TryStart(first, Prompt, true, 64, 0, out _);
        Run(kv, first, Prompt);
        Assert.Equal(0, kv.Pools[0].CachedCount);
        var second = kv.Open(Base);
        kv.TryStart(second, Prompt, true, 64, 0, out int cached);
        Assert.Equal(0, cached);
        Assert.Equal(0, kv.QueriedTokens);
    }

    [Fact]
    public void ASlidingWindowReleasesTheBlocksNoLaterQuerySees()
    {
        var kv = new KvCacheManager(new BlockPool(32), 4, prefixCaching: true, slidingWindow: 6);
        var s = kv.Open(Base);
        kv.TryStart(s, Prompt, true, 64, 0, out _);
        kv.TryHold(s, 20);
        // The next query is at position 20 and sees keys 15..20: blocks 0..2 (positions 0..11) are done with, block 3 (12..15) is not.
        kv.Commit(s, Prompt, 0, 20, 20);
        var table = s.ToTables().Groups[0];
        Assert.Equal([BlockPool.NullBlock, BlockPool.NullBlock, BlockPool.NullBlock], table[..3]);
        Assert.All(table[3..], b => Assert.NotEqual(BlockPool.NullBlock, b));
        Assert.Equal(2, s.HeldCount);
        // Released blocks keep their hashes for later prompts.
        Assert.Equal(5, kv.Pools[0].CachedCount);
    }

    [Fact]
    public void KeysComputedPastTheLengthThresholdAreNotSharedWithAShorterPrompt()
    {
        // longrope: a 20-token prompt is computed with the long factors (past 10), a 9-token one with the short.
        var kv = new KvCacheManager(new BlockPool(32), 4, prefixCaching: true, slidingWindow: null, lengthThreshold: 10);
        var longPrompt = kv.Open(Base);
        kv.TryStart(longPrompt, Prompt, true, 64, 0, out _);
        Run(kv, longPrompt, Prompt);

        var shortPrompt = kv.Open(Base);
        Assert.True(kv.TryStart(shortPrompt, Prompt[..9], true, 64, 0, out int none));
        Assert.Equal(0, none);
        kv.TryHold(shortPrompt, 9);
        kv.Commit(shortPrompt, Prompt[..9], 0, 9, 9);

        var longer = kv.Open(Base);
        Assert.True(kv.TryStart(longer, [.. Prompt, 1, 2, 3], true, 64, 0, out int reused));
        Assert.Equal(20, reused);
        var shorter = kv.Open(Base);
        Assert.True(kv.TryStart(shorter, Prompt[..10], true, 64, 0, out int shortReused));
        Assert.Equal(8, shortReused);                                                // the 9-token prompt's two blocks
    }

    [Fact]
    public void ABlockComputedAcrossTheLengthThresholdIsNeverShared()
    {
        var kv = new KvCacheManager(new BlockPool(32), 4, prefixCaching: true, slidingWindow: null, lengthThreshold: 10);
        var s = kv.Open(Base);
        kv.TryStart(s, Prompt[..9], true, 64, 0, out _);
        kv.TryHold(s, 12);
        kv.Commit(s, Prompt, 0, 9, 9);                                              // prompt: short factors
        kv.Commit(s, Prompt, 9, 10, 10);                                            // decode at 9: length 10, short
        kv.Commit(s, Prompt, 10, 11, 11);                                           // decode at 10: length 11, long
        kv.Commit(s, Prompt, 11, 12, 12);
        // Blocks 0 and 1 are short; block 2 (positions 8..11) mixes both and matches no prompt.
        var again = kv.Open(Base);
        Assert.True(kv.TryStart(again, Prompt[..13], true, 64, 0, out int reused));
        Assert.Equal(0, reused);                                                    // a 13-token prompt is long: no short block matches
        var shortAgain = kv.Open(Base);
        Assert.True(kv.TryStart(shortAgain, Prompt[..10], true, 64, 0, out int shortReused));
        Assert.Equal(8, shortReused);
    }

    [Fact]
    public void WithTwoGroupsOnlyTheWindowedOneReleasesAndAPrefixMustBeCachedInBoth()
    {
        var full = new BlockPool(32);
        var windowed = new BlockPool(32);
        var kv = new KvCacheManager([full, windowed], [null, 6], 4, prefixCaching: true);
        var s = kv.Open(Base);
        kv.TryStart(s, Prompt, true, 64, 0, out _);
        kv.TryHold(s, 20);
        kv.Commit(s, Prompt, 0, 20, 20);
        var tables = s.ToTables();
        Assert.All(tables.Groups[0], b => Assert.NotEqual(BlockPool.NullBlock, b));
        Assert.Equal([BlockPool.NullBlock, BlockPool.NullBlock, BlockPool.NullBlock], tables.Groups[1][..3]);
        Assert.Equal(5, full.UsedCount);
        Assert.Equal(2, windowed.UsedCount);

        // The released blocks are still cached in the windowed pool: the prefix is found in both.
        var again = kv.Open(Base);
        Assert.True(kv.TryStart(again, Prompt, true, 64, 0, out int cached));
        Assert.Equal(16, cached);
        kv.Free(again);
        kv.Free(s);

        // Evict the windowed pool's copy of the first block: no group may serve the prefix alone.
        var filler = new List<int>();
        Assert.True(windowed.TryAllocate(windowed.FreeCount, filler));
        windowed.Release(filler);
        var third = kv.Open(Base);
        Assert.True(kv.TryStart(third, Prompt, true, 64, 0, out int none));
        Assert.Equal(0, none);
    }

    [Fact]
    public void GrowingTakesBlocksInEveryGroupOrInNone()
    {
        var full = new BlockPool(16);
        var windowed = new BlockPool(3);
        var kv = new KvCacheManager([full, windowed], [null, 4], 4, prefixCaching: false);
        var s = kv.Open(Base);
        Assert.True(kv.TryStart(s, Prompt[..8], false, 64, 0, out _));
        Assert.False(kv.TryHold(s, 12));                                             // the windowed pool has no third block
        Assert.Equal(2, full.UsedCount);
        Assert.Equal(8, kv.HoldableTokens(s));
        kv.Commit(s, Prompt, 0, 8, 8);                                               // window 4: block 0 is done with
        Assert.True(kv.TryHold(s, 12));
        Assert.Equal(3, full.UsedCount);
        Assert.Equal(2, windowed.UsedCount);
        Assert.False(kv.Fits(40, 8, out int peak, out int capacity));
        Assert.Equal((4, 2), (peak, capacity));                                      // the windowed group: (4 + 8) / 4 + 1 blocks of 2
    }

    [Fact]
    public void PeakBlocksAreTheWholeSequenceOrTheWindowAndAChunk()
    {
        var full = new KvCacheManager(new BlockPool(8), 16, true, null);
        Assert.Equal(7, full.PeakBlocks(0, 100, 32));
        var windowed = new KvCacheManager(new BlockPool(8), 16, true, 24);
        Assert.Equal(5, windowed.PeakBlocks(0, 1000, 32));   // ceil((24 + 32) / 16) + 1
        Assert.Equal(2, windowed.PeakBlocks(0, 20, 32));     // short sequences: all of it
    }
}

/// <summary>
/// The paged cache under the scheduler: parity with the references through chunked prefill,
/// prefix reuse and preemption; prefixes never cross adapter versions; a window frees memory.
/// </summary>
public sealed class PagedSchedulerTests : IDisposable
{
    private readonly CausalLanguageModel _model = CausalLanguageModel.Load(Fixtures.LlamaTiny, torch.CPU, ScalarType.Float32);
    private readonly ReferenceFile _reference = Fixtures.LoadReference(Path.Combine(Fixtures.Root, "llama-tiny", "reference.json"));

    public void Dispose() => _model.Dispose();

    private static GenerationRequest Greedy(int[] prompt, string? adapter, int tokens = 16) => new()
    {
        PromptIds = prompt,
        Adapter = adapter,
        Sampling = SamplingParams.Greedy(tokens) with { IgnoreEos = true },
    };

    private static (Scheduler Scheduler, AdapterManager Adapters, ModelRunner Runner) Start(CausalLanguageModel model, int blocks, int blockSize,
        int maxNumSeqs = 8, int maxBatchTokens = 64, bool prefixCaching = true)
    {
        var runner = ModelRunner.WithBlocks(model, Math.Min(512, model.MaxPositions), blocks, blockSize);
        var adapters = new AdapterManager(model);
        var scheduler = new Scheduler(runner, adapters, new SchedulerOptions
        {
            MaxNumSeqs = maxNumSeqs,
            MaxBatchTokens = maxBatchTokens,
            EosTokenIds = model.Config.EosTokenIds,
            PrefixCaching = prefixCaching,
        });
        return (scheduler, adapters, runner);
    }

    [Fact]
    public async Task ASecondRequestReusesTheFirstsPrefixAndGetsTheSameTokens()
    {
        var (scheduler, adapters, runner) = Start(_model, blocks: 64, blockSize: 4, maxBatchTokens: 12);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        var c = _reference.Cases["base"][1];                                        // 46 prompt tokens

        var (firstIds, firstLogprobs, _) = await SchedulerTests.Collect(scheduler.Submit(Greedy(c.PromptIds, null)));
        Assert.Equal(0, scheduler.Stats.PrefixHitTokens);
        var (secondIds, secondLogprobs, _) = await SchedulerTests.Collect(scheduler.Submit(Greedy(c.PromptIds, null)));

        // 45 tokens before the last one: 11 full blocks of 4 are reused.
        Assert.Equal(44, scheduler.Stats.PrefixHitTokens);
        Assert.Equal(92, scheduler.Stats.PrefixQueryTokens);
        Assert.Equal(c.GreedyIds, firstIds);
        Assert.Equal(c.GreedyIds, secondIds);
        ParityTests.AssertClose(c.GreedyLogprobs, secondLogprobs.ToArray(), "logprobs over a reused prefix");
        ParityTests.AssertClose(firstLogprobs.ToArray(), secondLogprobs.ToArray(), "logprobs with and without reuse");

        // A prompt that extends the first request's output reuses its generated tokens too.
        int[] followUp = [.. c.PromptIds, .. c.GreedyIds[..8]];
        long hits = scheduler.Stats.PrefixHitTokens;
        await SchedulerTests.Collect(scheduler.Submit(Greedy(followUp, null, 2)));
        Assert.Equal(52, scheduler.Stats.PrefixHitTokens - hits);                   // 53 tokens before the last: 13 blocks
    }

    [Fact]
    public async Task APromptNeverReusesKeysComputedUnderAnotherAdapterOrAnotherVersionOfIt()
    {
        var (scheduler, adapters, runner) = Start(_model, blocks: 64, blockSize: 4, maxBatchTokens: 64);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        var prompt = _reference.Cases["base"][1].PromptIds;
        Assert.Equal(prompt, _reference.Cases["shout"][1].PromptIds);
        Assert.Equal(prompt, _reference.Cases["reverse"][1].PromptIds);

        await adapters.LoadAsync("bot", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        var (baseIds, _, _) = await SchedulerTests.Collect(scheduler.Submit(Greedy(prompt, null)));
        var (shoutIds, _, _) = await SchedulerTests.Collect(scheduler.Submit(Greedy(prompt, "bot")));
        Assert.Equal(0, scheduler.Stats.PrefixHitTokens);

        // The same name, new weights: keyed by name alone, the cache would serve shout's keys to reverse.
        await adapters.LoadAsync("bot", Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"));
        var (reverseIds, _, _) = await SchedulerTests.Collect(scheduler.Submit(Greedy(prompt, "bot")));
        Assert.Equal(0, scheduler.Stats.PrefixHitTokens);

        Assert.Equal(_reference.Cases["base"][1].GreedyIds, baseIds);
        Assert.Equal(_reference.Cases["shout"][1].GreedyIds, shoutIds);
        Assert.Equal(_reference.Cases["reverse"][1].GreedyIds, reverseIds);

        // Under the version that computed it, the prefix is reused.
        await SchedulerTests.Collect(scheduler.Submit(Greedy(prompt, "bot")));
        Assert.Equal(44, scheduler.Stats.PrefixHitTokens);
    }

    [Fact]
    public async Task PreemptedSequencesResumeWithUnchangedOutputs()
    {
        // 8 blocks of 4 = 32 tokens; every request needs 18 to 32, so at most two run at once and
        // decode steps keep running out of blocks.
        var (scheduler, adapters, runner) = Start(_model, blocks: 9, blockSize: 4, maxBatchTokens: 16);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        await adapters.LoadAsync("shout", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        await adapters.LoadAsync("reverse", Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"));
        var jobs = new[] { "base", "shout", "reverse" }
            .SelectMany(v => new[] { 0, 3 }.Select(i => (Variant: v, Case: _reference.Cases[v][i])))
            .Select(j => (j.Variant, j.Case, Result: SchedulerTests.Collect(scheduler.Submit(Greedy(j.Case.PromptIds, j.Variant == "base" ? null : j.Variant)))))
            .ToArray();
        foreach (var (variant, expected, result) in jobs)
        {
            var (ids, logprobs, finished) = await result;
            Assert.Equal(FinishReason.Length, finished.Reason);
            Assert.True(expected.GreedyIds.SequenceEqual(ids), $"{variant}: expected [{string.Join(",", expected.GreedyIds)}], got [{string.Join(",", ids)}]");
            ParityTests.AssertClose(expected.GreedyLogprobs, logprobs.ToArray(), $"{variant} logprobs");
        }
        Assert.True(scheduler.Stats.Preemptions > 0, "the cache was sized so that sequences must be preempted");
        Assert.Equal(0, scheduler.Stats.KvBlocksUsed);
    }

    [Fact]
    public async Task SeededSamplingIsUnchangedByPreemption()
    {
        // The same seeded requests through a cache that holds them all and through one that
        // forces preemptions: a preempted row keeps its generator's state, so it draws the same tokens.
        var requests = _reference.Cases["base"].Where(c => c.PromptIds.Length < 20)
            .SelectMany(c => Enumerable.Range(0, 3).Select(seed => new GenerationRequest
            {
                PromptIds = c.PromptIds,
                Sampling = new SamplingParams { MaxTokens = 14, Temperature = 1.0, TopP = 0.9, Seed = seed, IgnoreEos = true },
            })).ToArray();
        async Task<(List<int>[] Ids, long Preemptions)> Run(int blocks)
        {
            var (scheduler, adapters, runner) = Start(_model, blocks, blockSize: 4, maxBatchTokens: 16);
            using var _ = scheduler; using var __ = adapters; using var ___ = runner;
            var results = await Task.WhenAll(requests.Select(r => SchedulerTests.Collect(scheduler.Submit(r))));
            return (results.Select(r => r.Ids).ToArray(), scheduler.Stats.Preemptions);
        }
        var (alone, none) = await Run(blocks: 256);
        var (squeezed, preemptions) = await Run(blocks: 9);
        Assert.Equal(0, none);
        Assert.True(preemptions > 0, "the small cache must preempt");
        for (int i = 0; i < requests.Length; i++) Assert.Equal(alone[i], squeezed[i]);
    }

    [Fact]
    public async Task ATightCacheUnderMixedTrafficGivesEveryRequestItsOwnTokensAndLeaksNoBlock()
    {
        // Random prompts cut from a few shared prefixes (so blocks are shared and evicted), three
        // variants, some requests cancelled while they run, through 11 blocks of 4 tokens:
        // admission waits, preemption, prefix reuse and cancellation all interleave. Each finished
        // request must get the tokens it gets alone on a roomy cache without prefix caching.
        var random = new Random(7);
        var prefixes = Enumerable.Range(0, 3).Select(_ => Enumerable.Range(0, 30).Select(_ => random.Next(3, 250)).ToArray()).ToArray();
        var variants = new string?[] { null, "shout", "reverse" };
        var requests = Enumerable.Range(0, 36).Select(i =>
        {
            var prefix = prefixes[random.Next(prefixes.Length)];
            int length = random.Next(3, 31);
            return (Request: Greedy(prefix[..length], variants[random.Next(variants.Length)], random.Next(1, 13)), Cancel: i % 7 == 3);
        }).ToArray();

        async Task<(List<int>?[] Ids, SchedulerStats Stats)> Run(int blocks, bool caching, bool cancelSome)
        {
            var (scheduler, adapters, runner) = Start(_model, blocks, blockSize: 4, maxNumSeqs: 6, maxBatchTokens: 8, prefixCaching: caching);
            using var _ = scheduler; using var __ = adapters; using var ___ = runner;
            await adapters.LoadAsync("shout", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
            await adapters.LoadAsync("reverse", Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"));
            var cancels = requests.Select(_ => new CancellationTokenSource()).ToArray();
            var runs = requests.Select((r, i) => SchedulerTests.Collect(scheduler.Submit(r.Request, cancels[i].Token))).ToArray();
            if (cancelSome)
            {
                await Task.Delay(50);
                for (int i = 0; i < requests.Length; i++) if (requests[i].Cancel) cancels[i].Cancel();
            }
            var results = await Task.WhenAll(runs);
            Assert.Equal(0, scheduler.Stats.Running);
            Assert.Equal(0, scheduler.Stats.KvBlocksUsed);                             // every block came back
            Assert.True(runner.Pools.All(p => p.FreeCount == p.Capacity));
            return (results.Select(r => r.Finished.Reason == FinishReason.Length ? r.Ids : null).ToArray(), scheduler.Stats);
        }

        var (alone, _) = await Run(blocks: 512, caching: false, cancelSome: false);
        var (squeezed, stats) = await Run(blocks: 12, caching: true, cancelSome: true);
        Assert.True(stats.Preemptions > 0, "the tight cache must preempt");
        Assert.True(stats.PrefixHitTokens > 0, "the shared prefixes must be reused");
        int compared = 0;
        for (int i = 0; i < requests.Length; i++)
        {
            if (squeezed[i] is not { } ids) { Assert.True(requests[i].Cancel, $"request {i} did not finish"); continue; }
            Assert.True(alone[i]!.SequenceEqual(ids), $"request {i}: expected [{string.Join(",", alone[i]!)}], got [{string.Join(",", ids)}]");
            compared++;
        }
        Assert.True(compared >= 30);
    }

    [Fact]
    public async Task PromptScoresOfAPreemptedOrCachedPromptAreComplete()
    {
        var (scheduler, adapters, runner) = Start(_model, blocks: 64, blockSize: 4, maxBatchTokens: 8);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        var c = _reference.Cases["base"][0];
        int[] prompt = [.. c.PromptIds, .. c.GreedyIds[..8]];
        await SchedulerTests.Collect(scheduler.Submit(Greedy(prompt, null, 1)));
        var scoring = Greedy(prompt, null, 1) with { Sampling = SamplingParams.Greedy(1) with { IgnoreEos = true, PromptLogprobs = 1 } };
        PromptScored? scored = null;
        await foreach (var e in scheduler.Submit(scoring).Events.ReadAllAsync())
            if (e is PromptScored p) scored = p;
        Assert.NotNull(scored);
        Assert.Equal(prompt.Length, scored!.Logprobs.Count);
        for (int j = 0; j < 8; j++)
            Assert.True(Math.Abs(c.GreedyLogprobs[j] - scored.Logprobs[c.PromptIds.Length + j]!.Value) < 1e-3, $"token {j}");
    }

    [Fact]
    public void ARequestLargerThanTheWholeCacheIsRefusedAtOnce()
    {
        var (scheduler, adapters, runner) = Start(_model, blocks: 9, blockSize: 4);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        var ex = Assert.Throws<RequestTooLongException>(() => scheduler.Submit(Greedy(_reference.Cases["base"][1].PromptIds, null)));
        Assert.Contains("KV cache", ex.Message);
        Assert.Contains("--kv-cache-memory", ex.Message);
        Assert.Equal(0, scheduler.Stats.Waiting);
    }

    [Fact]
    public async Task ASlidingWindowModelRunsASequenceLongerThanTheCache()
    {
        string dir = Path.Combine(Fixtures.Models, "mistral-swa-tiny");
        var reference = GgufReference.Load(Path.Combine(dir, "reference.json"));
        var expected = reference.Cases["base"].MaxBy(c => c.PromptIds.Length)!;    // 231 prompt tokens, window 24
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        // 8 blocks of 16 = 128 tokens for a 247-token sequence: it fits only because blocks
        // that fall out of the window are given back as the prompt is prefilled.
        var (scheduler, adapters, runner) = Start(model, blocks: 9, blockSize: 16, maxBatchTokens: 32);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        int peak = 0;
        scheduler.StepCompleted += s => peak = Math.Max(peak, s.KvBlocksUsed);
        var (ids, _, _) = await SchedulerTests.Collect(scheduler.Submit(Greedy(expected.PromptIds, null)));
        int trusted = expected.StepMargins.TakeWhile(m => m > 1e-3).Count();
        Assert.Equal(expected.GreedyIds.Take(trusted), ids.Take(trusted));
        Assert.InRange(peak, 1, 5);
    }

    [Fact]
    public async Task AHybridModelsWindowedLayersGiveTheirBlocksBackWhileItsGlobalLayersKeepThem()
    {
        string dir = Path.Combine(Fixtures.Models, "gemma3-tiny");
        var reference = GgufReference.Load(Path.Combine(dir, "reference.json"));
        var expected = reference.Cases["base"].MaxBy(c => c.PromptIds.Length)!;    // 231 prompt tokens; window 16 on 4 of 6 layers
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        var groups = KvGroup.Of(model.Config);
        Assert.Equal([null, 16], groups.Select(g => g.Window));
        // The global layers' pool holds the 247-token sequence (16 blocks); the windowed
        // layers' holds 5 blocks, which is enough only if blocks out of the window go back.
        var runner = ModelRunner.WithGroupBlocks(model, 512, [1 + 16, 1 + 5], 16);
        using var adapters = new AdapterManager(model);
        using var scheduler = new Scheduler(runner, adapters, new SchedulerOptions { MaxNumSeqs = 2, MaxBatchTokens = 32 });
        using var _ = runner;
        int peakWindowed = 0, peakFull = 0;
        scheduler.StepCompleted += _ =>
        {
            peakFull = Math.Max(peakFull, runner.Pools[0].UsedCount);
            peakWindowed = Math.Max(peakWindowed, runner.Pools[1].UsedCount);
        };
        var (ids, _, finished) = await SchedulerTests.Collect(scheduler.Submit(Greedy(expected.PromptIds, null)));
        Assert.Null(finished.Error);
        int trusted = expected.StepMargins.TakeWhile(m => m > 1e-3).Count();
        Assert.Equal(expected.GreedyIds.Take(trusted), ids.Take(trusted));
        Assert.Equal(16, peakFull);
        Assert.InRange(peakWindowed, 1, 4);
    }

    public static TheoryData<string> Families => new()
    {
        "qwen3-tiny", "qwen3-moe-tiny", "mixtral-tiny", "gemma2-tiny", "gemma3-tiny", "phi3-tiny",
        "qwen2-yarn-tiny", "llama-linear-tiny", "mistral-swa-tiny",
    };

    [Theory]
    [MemberData(nameof(Families))]
    public async Task EveryFamilyMatchesLlamaCppThroughChunkedPrefillAndAReusedPrefix(string family)
    {
        string dir = Path.Combine(Fixtures.Models, family);
        var reference = GgufReference.Load(Path.Combine(dir, "reference.json"));
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        var (scheduler, adapters, runner) = Start(model, blocks: 1024, blockSize: 4, maxBatchTokens: 24);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        foreach (string name in reference.Cases.Keys.Where(k => k != "base"))
            await adapters.LoadAsync(name, Path.Combine(dir, "adapters", name));

        // Twice: the second round reads every full block of its prompt from the cache.
        for (int round = 0; round < 2; round++)
        {
            var jobs = reference.Cases.SelectMany(v => v.Value.Select(c => (Variant: v.Key, Case: c,
                Result: SchedulerTests.Collect(scheduler.Submit(Greedy(c.PromptIds, v.Key == "base" ? null : v.Key)))))).ToArray();
            foreach (var (variant, expected, result) in jobs)
            {
                var (ids, _, _) = await result;
                int trusted = expected.StepMargins.TakeWhile(m => m > 1e-3).Count();
                Assert.True(expected.GreedyIds.Take(trusted).SequenceEqual(ids.Take(trusted)),
                    $"{family} {variant} round {round}: expected [{string.Join(",", expected.GreedyIds)}], got [{string.Join(",", ids)}]");
            }
        }
        Assert.True(scheduler.Stats.PrefixHitTokens > 0);
    }
}

/// <summary>How <c>--kv-cache-memory</c> sizes the pool.</summary>
public sealed class KvCacheSizingTests
{
    private static long BlockBytes(InferenceEngine engine) =>
        PagedKvCache.BytesPerToken(engine.Config, ScalarType.Float32) * engine.Options.BlockSize;

    [Fact]
    public async Task ABudgetInBytesBecomesThatManyBlocks()
    {
        using var engine = await InferenceEngine.LoadAsync(new EngineOptions { ModelDirectory = Fixtures.LlamaTiny, Device = "cpu", KvCacheMemory = 1 << 20, MaxModelLen = 256 });
        Assert.Equal((1 << 20) / BlockBytes(engine), engine.Scheduler.Stats.KvBlocks);
    }

    [Fact]
    public async Task AHybridModelsWindowedLayersGetWhatTheirWindowsNeedAndTheGlobalLayersTheRest()
    {
        // gemma3-tiny: 2 global and 4 windowed (16) layers. The default budget is 2 sequences x
        // 16 blocks in all 6 layers = 96 global-layer-pair blocks' worth. Windowed layers need at
        // most (16 + 16) / 16 + 1 = 3 blocks per sequence: 6 blocks, each as big as two global
        // ones; the global group gets the other 84.
        using var engine = await InferenceEngine.LoadAsync(new EngineOptions
        {
            ModelDirectory = Path.Combine(Fixtures.Models, "gemma3-tiny"), Device = "cpu", MaxNumSeqs = 2, MaxModelLen = 256, MaxBatchTokens = 16,
        });
        Assert.Equal(84 + 6, engine.Scheduler.Stats.KvBlocks);
    }

    [Fact]
    public async Task ByDefaultThePoolHoldsMaxNumSeqsFullContexts()
    {
        using var engine = await InferenceEngine.LoadAsync(new EngineOptions { ModelDirectory = Fixtures.LlamaTiny, Device = "cpu", MaxNumSeqs = 3, MaxModelLen = 100 });
        Assert.Equal(3 * 7, engine.Scheduler.Stats.KvBlocks);                   // 100 tokens = 7 blocks of 16
    }

    [Fact]
    public async Task AFractionIsOfTheDevicesFreeMemory()
    {
        long free = DeviceMemory.Free(torch.CPU);
        Assert.True(free > 0);
        using var engine = await InferenceEngine.LoadAsync(new EngineOptions { ModelDirectory = Fixtures.LlamaTiny, Device = "cpu", KvCacheMemoryFraction = 0.001, MaxModelLen = 256 });
        long blocks = engine.Scheduler.Stats.KvBlocks;
        // Free memory moves while the test runs; the pool is within a factor of two of 0.1 % of it.
        Assert.InRange(blocks * BlockBytes(engine), free / 2000, free / 500);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.5)]
    public async Task AFractionOutsideZeroToOneIsRefused(double fraction)
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => InferenceEngine.LoadAsync(new EngineOptions { ModelDirectory = Fixtures.LlamaTiny, Device = "cpu", KvCacheMemoryFraction = fraction }));
        Assert.Contains("--kv-cache-memory", ex.Message);
    }

    [Fact]
    public async Task ABudgetBelowOneBlockIsRefusedNamingTheOption()
    {
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => InferenceEngine.LoadAsync(new EngineOptions { ModelDirectory = Fixtures.LlamaTiny, Device = "cpu", KvCacheMemory = 100 }));
        Assert.Contains("--kv-cache-memory", ex.Message);
    }
}
