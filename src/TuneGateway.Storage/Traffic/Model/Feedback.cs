using System.Text.Json.Serialization;

namespace TuneGateway.Storage;

/// <summary>The scale a rating was given on.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RatingScale>))]
public enum RatingScale
{
    /// <summary>Thumbs up (+1), neutral (0) or down (-1).</summary>
    [JsonStringEnumMemberName("thumbs")]
    Thumbs,

    /// <summary>One to five stars.</summary>
    [JsonStringEnumMemberName("stars")]
    Stars,
}

/// <summary>
/// The body of <c>POST /v1/feedback</c>: <c>{ "id", "rating" | "stars", "correction"?, "comment"? }</c>.
/// Exactly one of <see cref="Rating"/> (thumbs: -1, 0 or 1) and <see cref="Stars"/> (1-5); see
/// <see cref="FeedbackRating"/>.
/// </summary>
/// <remarks>
/// Until this contract, <c>rating</c> also carried stars, and <c>rating: 1</c> was a thumbs up unless
/// the client added <c>"scale": "stars"</c>, so a one-star rating trained as a positive. Stars now
/// have their own field, and <see cref="Scale"/> is read only to refuse it with a clear error.
/// </remarks>
/// <param name="Id">The completion id the API returned.</param>
/// <param name="Rating">Thumbs: -1 (bad), 0 (neutral) or 1 (good).</param>
/// <param name="Correction">The answer the user wanted instead.</param>
/// <param name="Comment">Free-text comment.</param>
/// <param name="Stars">One (worst) to five (best) stars.</param>
public sealed record FeedbackRequest(
    string Id,
    int? Rating = null,
    string? Correction = null,
    string? Comment = null,
    int? Stars = null)
{
    /// <summary>The old contract's <c>scale</c> field, kept only so that a client still sending it is told what to send instead.</summary>
    public System.Text.Json.JsonElement? Scale { get; init; }
}

/// <summary>Feedback as stored, linked to the logged request by <see cref="Id"/>.</summary>
public sealed record Feedback
{
    /// <summary>The completion id, i.e. the <see cref="TrafficEntry.Id"/> of the request it rates.</summary>
    public required string Id { get; init; }

    /// <summary>The log partition of the rated request.</summary>
    public required string Adapter { get; init; }

    /// <summary>
    /// The rating as the client sent it, on <see cref="Scale"/>: thumbs -1/0/1 (the request's <c>rating</c>)
    /// or 1-5 stars (the request's <c>stars</c>). Records stored before the <c>stars</c> field existed
    /// keep the scale they were read on then (docs/OPERATIONS.md, "Feedback ratings").
    /// </summary>
    public required int Rating { get; init; }

    /// <summary>The scale <see cref="Rating"/> is on.</summary>
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
/// <param name="Param">For <see cref="FeedbackStatus.Invalid"/>: the request field at fault (<c>id</c>, <c>rating</c>, <c>stars</c>, <c>scale</c>).</param>
public sealed record FeedbackResult(FeedbackStatus Status, Feedback? Feedback = null, string? Error = null, string? Param = null)
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

/// <summary>A valid rating: its scale, the value the client sent and the common score in [-1, 1].</summary>
/// <param name="Scale">Thumbs or stars.</param>
/// <param name="Value">-1/0/1 for thumbs, 1-5 for stars.</param>
/// <param name="Score">The normalised score every consumer (curation, canary analysis) reads.</param>
public readonly record struct NormalizedRating(RatingScale Scale, int Value, double Score);

/// <summary>Validates a feedback request's rating and maps it onto the common score scale.</summary>
public static class FeedbackRating
{
    /// <summary>Thumbs: worst and best.</summary>
    public const int MinThumbs = -1, MaxThumbs = 1;

    /// <summary>Stars: worst and best.</summary>
    public const int MinStars = 1, MaxStars = 5;

    /// <summary>
    /// Exactly one of <c>rating</c> (thumbs -1, 0, 1: score -1, 0, 1) and <c>stars</c> (1-5: score
    /// -1, -0.5, 0, 0.5, 1); both, neither, a value out of range or the retired <c>scale</c> field are
    /// refused, naming the field in <paramref name="param"/>.
    /// </summary>
    /// <param name="request">The request.</param>
    /// <param name="rating">The normalised rating when valid.</param>
    /// <param name="param">The field at fault.</param>
    /// <param name="error">Why the request is invalid.</param>
    /// <returns><see langword="true"/> when the rating is valid.</returns>
    public static bool TryNormalize(FeedbackRequest request, out NormalizedRating rating, out string? param, out string? error)
    {
        ArgumentNullException.ThrowIfNull(request);
        rating = default;
        // "scale": null is what a client with an optional field sends: absent, not the retired field.
        bool scale = request.Scale is { ValueKind: not (System.Text.Json.JsonValueKind.Null or System.Text.Json.JsonValueKind.Undefined) };
        (param, error) = (scale, request.Rating, request.Stars) switch
        {
            (true, _, _) => ("scale", "'scale' is no longer accepted: send thumbs as 'rating' (-1, 0 or 1) or 1-5 stars as 'stars'."),
            (false, { }, { }) => ("stars", "Send either 'rating' (thumbs: -1, 0 or 1) or 'stars' (1-5), not both."),
            (false, null, null) => ("rating", "'rating' (thumbs: -1, 0 or 1) or 'stars' (1-5) is required."),
            (false, { } r, null) when r is < MinThumbs or > MaxThumbs => ("rating", $"'rating' is thumbs and must be -1, 0 or 1 (got {r}); send 1-5 stars as 'stars'."),
            (false, null, { } st) when st is < MinStars or > MaxStars => ("stars", $"'stars' must be 1-5 (got {st})."),
            _ => ((string?)null, (string?)null),
        };
        if (error is not null) return false;
        rating = request.Rating is { } thumbs
            ? new NormalizedRating(RatingScale.Thumbs, thumbs, thumbs)
            : new NormalizedRating(RatingScale.Stars, request.Stars!.Value, StarsScore(request.Stars!.Value));
        return true;
    }

    /// <summary>1-5 stars onto [-1, 1]: linear, three stars neutral.</summary>
    public static double StarsScore(int stars) => (stars - 3) / 2.0;
}
