namespace TuneGateway.Storage;

/// <summary>
/// Read access to the traffic log and its feedback, for the admin API and the retraining loop.
/// </summary>
public interface ITrafficReader
{
    /// <summary>Looks up a logged request by its completion id, with its feedback.</summary>
    /// <returns>The record, or <see langword="null"/> when the id is unknown or was trimmed.</returns>
    Task<TrafficRecord?> GetAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Reads one page of an adapter's log in a time window, with feedback joined.</summary>
    /// <exception cref="FormatException">The query's cursor is malformed.</exception>
    Task<TrafficPage> QueryAsync(TrafficQuery query, CancellationToken cancellationToken = default);

    /// <summary>The adapters that have a log, with their retained entry counts.</summary>
    Task<IReadOnlyList<AdapterTrafficSummary>> ListAdaptersAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Counts feedback for <paramref name="adapter"/> created or updated after <paramref name="cursor"/>
    /// (every feedback ever, when it is <see langword="null"/>). An id counts once however often it changed.
    /// </summary>
    /// <exception cref="FormatException">The cursor is malformed.</exception>
    Task<FeedbackCount> CountFeedbackSinceAsync(string adapter, string? cursor, CancellationToken cancellationToken = default);
}

/// <summary>
/// A backend for the traffic log and feedback: Redis (<see cref="RedisTrafficStore"/>) or files
/// (<see cref="FileTrafficStore"/>). Both satisfy the same contract, checked by one shared test suite.
/// </summary>
/// <remarks>
/// Stores apply no privacy policy; <see cref="ITrafficLog"/> and <see cref="IFeedbackService"/> do that
/// before handing data over.
/// </remarks>
public interface ITrafficStore : ITrafficReader
{
    /// <summary>Whether the backend looks reachable now; when false, writers should not wait on it.</summary>
    bool IsAvailable { get; }

    /// <summary>
    /// Appends entries to their adapters' logs in order. Idempotent by <see cref="TrafficEntry.Id"/>:
    /// an id already in the log is skipped, so a batch may be retried after an ambiguous failure.
    /// Applies approximate trimming (count and age) as it goes.
    /// </summary>
    /// <returns>How many entries were new.</returns>
    Task<int> AppendAsync(IReadOnlyList<TrafficEntry> entries, CancellationToken cancellationToken = default);

    /// <summary>
    /// Stores feedback for a logged request, replacing earlier feedback for the same id.
    /// </summary>
    /// <returns><see cref="FeedbackStatus.Created"/>, <see cref="FeedbackStatus.Updated"/> or <see cref="FeedbackStatus.NotFound"/>.</returns>
    Task<FeedbackResult> UpsertFeedbackAsync(FeedbackInput feedback, CancellationToken cancellationToken = default);

    /// <summary>
    /// Trims every log exactly to the configured count and age, and removes feedback whose request is gone.
    /// </summary>
    Task<TrimResult> TrimAsync(CancellationToken cancellationToken = default);
}
