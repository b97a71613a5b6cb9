using System.Text.Json.Serialization;

namespace TuneGateway.Storage;

/// <summary>The scale a rating was given on.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RatingScale>))]
public enum RatingScale
{
    /// <summary>Thumbs up (+1) or down (-1).</summary>
    [JsonStringEnumMemberName("thumbs")]
    Thumbs,

    /// <summary>One to five stars.</summary>
    [JsonStringEnumMemberName("stars")]
    Stars,
}

/// <summary>
/// The body of <c>POST /v1/feedback</c>: <c>{ "id", "rating", "correction"?, "comment"?, "scale"? }</c>.
/// </summary>
/// <remarks>
/// Without <see cref="Scale"/>, -1 and 1 are read as thumbs and 2-5 as stars; a one-star rating therefore
/// needs <c>"scale": "stars"</c>.
/// </remarks>
/// <param name="Id">The completion id the API returned.</param>
/// <param name="Rating">Thumbs (+1/-1) or stars (1-5).</param>
/// <param name="Correction">The answer the user wanted instead.</param>
/// <param name="Comment">Free-text comment.</param>
/// <param name="Scale">The rating's scale, when the client states it.</param>
public sealed record FeedbackRequest(
    string Id,
    int Rating,
    string? Correction = null,
    string? Comment = null,
    RatingScale? Scale = null);

/// <summary>Feedback as stored, linked to the logged request by <see cref="Id"/>.</summary>
public sealed record Feedback
{
    /// <summary>The completion id, i.e. the <see cref="TrafficEntry.Id"/> of the request it rates.</summary>
    public required string Id { get; init; }

    /// <summary>The log partition of the rated request.</summary>
    public required string Adapter { get; init; }

    /// <summary>The rating as the client sent it.</summary>
    public required int Rating { get; init; }

    /// <summary>The scale <see cref="Rating"/> was read on.</summary>
    public required RatingScale Scale { get; init; }

    /// <summary>The rating on the common scale -1 (worst) … +1 (best); see <see cref="FeedbackRating"/>.</summary>
    public required double Score { get; init; }

    /// <summary>The answer the user wanted (redacted).</summary>
    public string? Correction { get; init; }

    /// <summary>The user's comment (redacted).</summary>
    public string? Comment { get; init; }

    /// <summary>The API key id that submitted the feedback.</summary>
    public string? ApiKeyId { get; init; }

    /// <summary>When feedback for this id was first stored.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>When it was last updated.</summary>
    public required DateTimeOffset UpdatedAt { get; init; }
}

/// <summary>Feedback to store, already validated, normalised and redacted (see <see cref="IFeedbackService"/>).</summary>
/// <param name="Id">The completion id.</param>
/// <param name="Rating">The raw rating.</param>
/// <param name="Scale">The scale of <paramref name="Rating"/>.</param>
/// <param name="Score">The normalised score.</param>
/// <param name="Correction">The wanted answer.</param>
/// <param name="Comment">The comment.</param>
/// <param name="ApiKeyId">The submitting key id.</param>
public sealed record FeedbackInput(
    string Id,
    int Rating,
    RatingScale Scale,
    double Score,
    string? Correction,
    string? Comment,
    string? ApiKeyId)
{
    /// <summary>
    /// The record a store keeps for this input on the log partition <paramref name="adapter"/>: an update
    /// keeps the first <see cref="Feedback.CreatedAt"/> of <paramref name="previous"/>.
    /// </summary>
    public Feedback ToStored(string adapter, Feedback? previous, DateTimeOffset now) => new()
    {
        Id = Id,
        Adapter = adapter,
        Rating = Rating,
        Scale = Scale,
        Score = Score,
        Correction = Correction,
        Comment = Comment,
        ApiKeyId = ApiKeyId,
        CreatedAt = previous?.CreatedAt ?? now,
        UpdatedAt = now,
    };
}

/// <summary>Outcome of storing feedback (written as <c>created</c>, <c>updated</c>, <c>not_found</c>, … in JSON).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<FeedbackStatus>))]
public enum FeedbackStatus
{
    /// <summary>First feedback for the id was stored.</summary>
    [JsonStringEnumMemberName("created")]
    Created,

    /// <summary>Feedback for the id existed and was replaced.</summary>
    [JsonStringEnumMemberName("updated")]
    Updated,

    /// <summary>No logged request has this id (or it was trimmed, or belongs to another API key).</summary>
    [JsonStringEnumMemberName("not_found")]
    NotFound,

    /// <summary>Accepted but deliberately not stored: the key opted out, or the request was not sampled.</summary>
    [JsonStringEnumMemberName("not_recorded")]
    NotRecorded,

    /// <summary>The request was malformed (see <see cref="FeedbackResult.Error"/>).</summary>
    [JsonStringEnumMemberName("invalid")]
    Invalid,

    /// <summary>The store could not be reached; the client may retry.</summary>
    [JsonStringEnumMemberName("unavailable")]
    Unavailable,
}

/// <summary>Result of a feedback submission; <see cref="StatusCode"/> is the HTTP status to answer with.</summary>
/// <param name="Status">What happened.</param>
/// <param name="Feedback">The stored feedback for <see cref="FeedbackStatus.Created"/> and <see cref="FeedbackStatus.Updated"/>.</param>
/// <param name="Error">A message for the client for the other outcomes.</param>
public sealed record FeedbackResult(FeedbackStatus Status, Feedback? Feedback = null, string? Error = null)
{
    /// <summary>HTTP status code for the outcome: 201, 200, 404, 202, 400 or 503.</summary>
    [JsonIgnore]
    public int StatusCode => Status switch
    {
        FeedbackStatus.Created => 201,
        FeedbackStatus.Updated => 200,
        FeedbackStatus.NotFound => 404,
        FeedbackStatus.NotRecorded => 202,
        FeedbackStatus.Invalid => 400,
        _ => 503,
    };
}

/// <summary>How much feedback for an adapter was created or updated after a cursor.</summary>
/// <param name="Count">Feedback records (distinct ids) created or updated after the cursor.</param>
/// <param name="Cursor">Cursor to pass next time to count only what is newer.</param>
public sealed record FeedbackCount(long Count, string Cursor);

/// <summary>Maps client ratings onto the common score scale.</summary>
public static class FeedbackRating
{
    /// <summary>
    /// Validates <paramref name="rating"/> and maps it to a score in [-1, 1]: thumbs -1/+1 map to -1/+1;
    /// stars 1…5 map linearly to -1, -0.5, 0, 0.5, 1.
    /// </summary>
    /// <param name="rating">The raw rating.</param>
    /// <param name="scale">The stated scale, or <see langword="null"/> to infer it (-1/1 thumbs, 2-5 stars).</param>
    /// <param name="resolvedScale">The scale the rating was read on.</param>
    /// <param name="score">The normalised score.</param>
    /// <param name="error">Why the rating is invalid.</param>
    /// <returns><see langword="true"/> when the rating is valid.</returns>
    public static bool TryNormalize(int rating, RatingScale? scale, out RatingScale resolvedScale, out double score, out string? error)
    {
        resolvedScale = scale ?? (rating is -1 or 1 ? RatingScale.Thumbs : RatingScale.Stars);
        score = 0;
        error = null;
        switch (resolvedScale)
        {
            case RatingScale.Thumbs when rating is -1 or 1:
                score = rating;
                return true;
            case RatingScale.Stars when rating is >= 1 and <= 5:
                score = (rating - 3) / 2.0;
                return true;
            default:
                error = scale is null
                    ? "rating must be -1 or 1 (thumbs) or 1-5 (stars)."
                    : resolvedScale == RatingScale.Thumbs ? "A thumbs rating must be -1 or 1." : "A star rating must be 1-5.";
                return false;
        }
    }
}
