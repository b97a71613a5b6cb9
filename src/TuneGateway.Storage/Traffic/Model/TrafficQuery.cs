namespace TuneGateway.Storage;

/// <summary>
/// A page request over one adapter's log, in log order (oldest first).
/// </summary>
/// <remarks>
/// The window is <c>[Since, Until)</c> on <see cref="TrafficRecord.Position"/> time. To read the next page,
/// pass the previous page's <see cref="TrafficPage.NextCursor"/> as <see cref="Cursor"/> with the same
/// window; the cursor replaces <see cref="Since"/>.
/// </remarks>
public sealed record TrafficQuery
{
    /// <summary>Largest page size; larger limits are clamped to it.</summary>
    public const int MaxLimit = 1000;

    /// <summary>Page size used when none is given.</summary>
    public const int DefaultLimit = 100;

    /// <summary>The adapter (log partition) to read; <see cref="TrafficEntry.NoAdapterStream"/> for base-model traffic.</summary>
    public required string Adapter { get; init; }

    /// <summary>Inclusive lower bound of the window, or <see langword="null"/> for the start of the log.</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>Exclusive upper bound of the window, or <see langword="null"/> for the end of the log.</summary>
    public DateTimeOffset? Until { get; init; }

    /// <summary>Maximum number of records to return (clamped to 1…<see cref="MaxLimit"/>).</summary>
    public int Limit { get; init; } = DefaultLimit;

    /// <summary>Continuation cursor from a previous page; the page starts right after it.</summary>
    public string? Cursor { get; init; }

    /// <summary>Whether to join each record's feedback.</summary>
    public bool IncludeFeedback { get; init; } = true;

    /// <summary>The effective page size.</summary>
    public int EffectiveLimit => Math.Clamp(Limit, 1, MaxLimit);

    /// <summary>The position the page starts after (from the cursor), if any.</summary>
    /// <exception cref="FormatException">The cursor was not produced by a store.</exception>
    public LogPosition? After => Cursor is null ? null : LogPosition.Parse(Cursor);
}

/// <summary>A logged request with its place in the log and its feedback, if any.</summary>
/// <param name="Position">Where the entry sits in its adapter's log.</param>
/// <param name="Entry">The entry as stored (redacted).</param>
/// <param name="Feedback">The latest feedback for the entry, when requested and present.</param>
public sealed record TrafficRecord(LogPosition Position, TrafficEntry Entry, Feedback? Feedback);

/// <summary>One page of a <see cref="TrafficQuery"/>.</summary>
/// <param name="Items">Records in log order.</param>
/// <param name="NextCursor">Cursor for the next page, or <see langword="null"/> when the window is exhausted.</param>
public sealed record TrafficPage(IReadOnlyList<TrafficRecord> Items, string? NextCursor);

/// <summary>An adapter that has a log, and how many entries the log holds.</summary>
/// <param name="Adapter">The adapter name (log partition).</param>
/// <param name="Count">Entries currently retained.</param>
public sealed record AdapterTrafficSummary(string Adapter, long Count);

/// <summary>What a trimming pass removed.</summary>
/// <param name="EntriesRemoved">Traffic entries removed by count or age.</param>
/// <param name="FeedbackRemoved">Feedback records removed because their request was trimmed.</param>
public sealed record TrimResult(long EntriesRemoved, long FeedbackRemoved);
