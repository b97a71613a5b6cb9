namespace TuneGateway.Engine.Serving;

/// <summary>Limits of the continuous-batching scheduler.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences running at once, at most (fewer when the KV cache's blocks run out).</summary>
    public int MaxNumSeqs { get; init; } = 32;
    /// <summary>Tokens per forward pass; long prompts are prefilled in chunks of what is left after decode rows.</summary>
    public int MaxBatchTokens { get; init; } = 2048;
    /// <summary>Requests waiting for a slot; beyond it, submissions fail with <see cref="QueueFullException"/>.</summary>
    public int MaxQueue { get; init; } = 256;
    /// <summary>Token ids that end a sequence unless the request ignores EOS.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary>Reuse cached KV blocks of prompt prefixes computed under the same adapter version.</summary>
    public bool PrefixCaching { get; init; } = true;
}

/// <summary>The waiting queue is full; the API answers 429 with Retry-After.</summary>
public sealed class QueueFullException(int capacity) : Exception($"The server is at capacity: {capacity} requests are already waiting. Retry later.")
{
    public int Capacity { get; } = capacity;
}

/// <summary>A request that can never run: its prompt plus max_tokens exceed the context length or the whole KV cache.</summary>
public sealed class RequestTooLongException(string message) : Exception(message);

/// <summary>A point-in-time view of the scheduler, for health, metrics and the gateway's routing.</summary>
public sealed record SchedulerStats(int Running, int Waiting, int FreeSlots, int Slots, long CachedTokens, long CacheCapacityTokens,
    long Steps, long GeneratedTokens, long PromptTokens, int LastBatchRows, int LastBatchTokens)
{
    public double CacheUsage => CacheCapacityTokens == 0 ? 0 : (double)CachedTokens / CacheCapacityTokens;

    /// <summary>KV cache blocks (the null block not counted), and those running sequences hold.</summary>
    public int KvBlocks { get; init; }
    public int KvBlocksUsed { get; init; }
    /// <summary>Blocks the prefix cache knows by hash, held or evictable.</summary>
    public int PrefixCachedBlocks { get; init; }
    /// <summary>Prompt tokens looked up in the prefix cache, and those found.</summary>
    public long PrefixQueryTokens { get; init; }
    public long PrefixHitTokens { get; init; }
    /// <summary>Sequences taken out of the batch to free KV blocks (each is recomputed later).</summary>
    public long Preemptions { get; init; }
}
