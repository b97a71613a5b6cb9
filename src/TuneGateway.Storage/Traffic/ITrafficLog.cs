namespace TuneGateway.Storage;

/// <summary>
/// The request path's handle on the traffic log. <see cref="Record"/> never blocks and never throws:
/// entries go to a bounded in-memory queue that a background writer drains.
/// </summary>
public interface ITrafficLog
{
    /// <summary>Hands an entry to the log, applying opt-out and sampling.</summary>
    /// <returns>What happened to the entry.</returns>
    TrafficLogDecision Record(TrafficEntry entry);

    /// <summary>Whether an entry with this id was accepted but is not yet in the store (queued or spilled).</summary>
    bool IsPending(string id);

    /// <summary>Counters since start.</summary>
    TrafficLogStatistics GetStatistics();
}

/// <summary>What <see cref="ITrafficLog.Record"/> did with an entry.</summary>
public enum TrafficLogDecision
{
    /// <summary>Queued for writing.</summary>
    Accepted,

    /// <summary>Not logged: the request fell outside the sample.</summary>
    SampledOut,

    /// <summary>Not logged: the API key opted out of traffic logging.</summary>
    OptedOut,

    /// <summary>Not logged: the entry was invalid (see <see cref="TrafficEntry.IsValid"/>).</summary>
    Rejected,

    /// <summary>Not logged: the queue was full or the log is shutting down. Counted as dropped.</summary>
    Dropped,
}

/// <summary>A snapshot of the writer's counters (also published on the <c>TuneGateway.Storage</c> meter).</summary>
/// <param name="Enqueued">Entries accepted into the queue.</param>
/// <param name="Written">Entries written to the store straight from the queue.</param>
/// <param name="Spilled">Entries written to the local spill file because the store was unavailable.</param>
/// <param name="Replayed">Spilled entries later written to the store.</param>
/// <param name="DroppedQueueFull">Entries refused because the in-memory queue was full.</param>
/// <param name="DroppedSpillFull">Entries lost because the spill file had reached its size bound (or could not be written).</param>
/// <param name="DroppedOther">Entries lost otherwise: unreadable spill lines, or refused during shutdown.</param>
/// <param name="SampledOut">Entries not logged by sampling.</param>
/// <param name="OptedOut">Entries not logged because their API key opted out.</param>
/// <param name="Rejected">Invalid entries.</param>
/// <param name="QueuedInMemory">Entries in the in-memory queue, or in the batch being written, now.</param>
/// <param name="QueuedInSpill">Entries in the spill file waiting for replay now.</param>
public sealed record TrafficLogStatistics(
    long Enqueued,
    long Written,
    long Spilled,
    long Replayed,
    long DroppedQueueFull,
    long DroppedSpillFull,
    long DroppedOther,
    long SampledOut,
    long OptedOut,
    long Rejected,
    long QueuedInMemory,
    long QueuedInSpill)
{
    /// <summary>All dropped entries.</summary>
    public long Dropped => DroppedQueueFull + DroppedSpillFull + DroppedOther;

    /// <summary>Entries waiting to reach the store (memory and spill).</summary>
    public long Backlog => QueuedInMemory + QueuedInSpill;
}

/// <summary>
/// The feedback endpoint's handle: validates, applies the privacy policy, and stores feedback linked to
/// the logged request. Never throws for a bad request or an unreachable store; the result says what happened.
/// </summary>
public interface IFeedbackService
{
    /// <summary>Stores (or updates) feedback for a completion.</summary>
    /// <param name="request">The request body.</param>
    /// <param name="apiKeyId">Id of the API key that sent the feedback.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The outcome; <see cref="FeedbackResult.StatusCode"/> is the HTTP status to answer with.</returns>
    Task<FeedbackResult> SubmitAsync(FeedbackRequest request, string? apiKeyId, CancellationToken cancellationToken = default);
}
