using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using TuneGateway.Storage;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// The traffic log's HTTP endpoints on the gateway (and serve):
/// <list type="bullet">
/// <item><c>POST /v1/feedback</c> <c>{id, rating | stars, correction?, comment?}</c> (any role): feedback on a
/// completion the caller's key received. 201 created, 200 updated (the same id again replaces the earlier
/// feedback), 202 accepted but not stored (the key opted out, the request was not sampled, or the log is
/// off); errors in OpenAI's shape: 400 naming the field, 404 for an id that was not logged (or was logged
/// for another key), 503 when the store cannot be reached.</item>
/// <item><c>GET /admin/traffic?adapter=&amp;since=&amp;until=&amp;limit=&amp;cursor=</c> (mlops, operator, admin): one page of
/// an adapter's log, oldest first, with feedback: <c>{data: [{position, entry, feedback}], next_cursor}</c>.</item>
/// </list>
/// </summary>
public static class TrafficEndpoints
{
    /// <summary>The log partition of requests not served by an adapter (pass it as <c>adapter</c>).</summary>
    public const string BaseModelAdapter = TrafficEntry.NoAdapterStream;

    public static void MapTrafficApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/feedback", FeedbackAsync).RequireAuthorization(Policies.Inference);
        app.MapGet("/admin/traffic", QueryAsync).RequireAuthorization(policy => policy.RequireRole(Roles.Mlops, Roles.Operator, Roles.Admin));
    }

    private const string FeedbackShape =
        "Expected {\"id\": the completion id, either \"rating\": -1, 0 or 1 (thumbs) or \"stars\": 1-5, \"correction\"?: text, \"comment\"?: text}.";

    private static async Task<IResult> FeedbackAsync(HttpContext context, ApiKeyStore keys)
    {
        FeedbackRequest? request;
        try
        {
            request = await JsonSerializer.DeserializeAsync<FeedbackRequest>(context.Request.Body, ServerJson.Options, context.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            string? field = ex.Path is { Length: > 2 } path && path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : null;
            throw ApiException.Invalid(field ?? "body", (field is null ? "The request body is not valid JSON. " : $"'{field}' has the wrong type. ") + FeedbackShape);
        }
        if (request is null) throw ApiException.Invalid("body", "The request body must be a JSON object. " + FeedbackShape);

        var service = context.RequestServices.GetService<IFeedbackService>();
        // In open mode there is no key to own requests; with keys, the library answers another key's request as unknown.
        string? keyId = keys.IsOpen ? null : context.Features.Get<ApiKeyIdentity>()?.Name;
        var result = service is not null
            ? await service.SubmitAsync(request, keyId, context.RequestAborted).ConfigureAwait(false)
            : NotLogged(request);
        return result.Status switch
        {
            FeedbackStatus.Created or FeedbackStatus.Updated => Results.Json(FeedbackBody(request.Id, result), ServerJson.OmitNulls, statusCode: result.StatusCode),
            FeedbackStatus.NotRecorded => Results.Json(new { id = request.Id, status = result.Status, message = result.Error }, ServerJson.OmitNulls, statusCode: result.StatusCode),
            FeedbackStatus.Invalid => throw ApiException.Invalid(result.Param ?? (TrafficEntry.IsValidName(request.Id) ? "rating" : "id"), result.Error ?? "Invalid feedback."),
            FeedbackStatus.NotFound => throw new ApiException(result.StatusCode, result.Error ?? $"No logged request has id '{request.Id}'.", ApiErrorTypes.NotFound, "id", "not_found"),
            _ => throw new ApiException(result.StatusCode, result.Error ?? "Feedback could not be stored; try again later.", ApiErrorTypes.Unavailable,
                code: "feedback_unavailable", retryAfter: TimeSpan.FromSeconds(1)),
        };
    }

    /// <summary>With the traffic log off, feedback is validated like any other and answered as not recorded.</summary>
    private static FeedbackResult NotLogged(FeedbackRequest request) =>
        !TrafficEntry.IsValidName(request.Id) ? new FeedbackResult(FeedbackStatus.Invalid, Error: "id must be the completion id the API returned.", Param: "id")
        : !FeedbackRating.TryNormalize(request, out _, out string? param, out string? error) ? new FeedbackResult(FeedbackStatus.Invalid, Error: error, Param: param)
        : new FeedbackResult(FeedbackStatus.NotRecorded, Error: "Feedback accepted; the traffic log is off on this server.");

    private static object FeedbackBody(string id, FeedbackResult result)
    {
        var f = result.Feedback!;
        return new
        {
            id,
            @object = "feedback",
            status = result.Status,
            // The request's shape: thumbs come back as rating, stars as stars.
            rating = f.Scale == RatingScale.Thumbs ? f.Rating : (int?)null,
            stars = f.Scale == RatingScale.Stars ? f.Rating : (int?)null,
            score = f.Score,
            correction = f.Correction,
            comment = f.Comment,
            created_at = f.CreatedAt,
            updated_at = f.UpdatedAt,
        };
    }

    /// <summary>One page of the JSON answer of <c>GET /admin/traffic</c>.</summary>
    private sealed record TrafficPageBody(IReadOnlyList<TrafficRecord> Data, string? NextCursor);

    private static async Task<IResult> QueryAsync(HttpContext context, CancellationToken cancellationToken)
    {
        var reader = context.RequestServices.GetService<ITrafficReader>()
            ?? throw new ApiException(404, "The traffic log is off on this server (start it with --redis or --data-dir).", ApiErrorTypes.NotFound, code: "traffic_log_disabled");
        var query = context.Request.Query;
        string adapter = query["adapter"].FirstOrDefault() is { Length: > 0 } a ? a
            : throw ApiException.Invalid("adapter", $"'adapter' is required: an adapter or alias name, or '{BaseModelAdapter}' for base-model traffic.");
        if (!TrafficEntry.IsValidName(adapter)) throw ApiException.Invalid("adapter", $"'{adapter}' is not a valid adapter name.");
        var since = Time(query["since"].FirstOrDefault(), "since");
        var until = Time(query["until"].FirstOrDefault(), "until");
        if (since is not null && until is not null && until < since) throw ApiException.Invalid("until", "'until' must not be before 'since'.");
        int limit = TrafficQuery.DefaultLimit;
        if (query["limit"].FirstOrDefault() is { } limitText
            && (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > TrafficQuery.MaxLimit))
            throw ApiException.Invalid("limit", $"'limit' must be a whole number from 1 to {TrafficQuery.MaxLimit}.");
        string? cursor = query["cursor"].FirstOrDefault() is { Length: > 0 } c ? c : null;
        if (cursor is not null && !LogPosition.TryParse(cursor, out _))
            throw ApiException.Invalid("cursor", "'cursor' must be a next_cursor value of an earlier page.");

        TrafficPage page;
        try
        {
            page = await reader.QueryAsync(new TrafficQuery { Adapter = adapter, Since = since, Until = until, Limit = limit, Cursor = cursor }, cancellationToken)
                .ConfigureAwait(false);
        }
        catch (FormatException ex)
        {
            throw ApiException.Invalid("cursor", ex.Message);
        }
        catch (Exception ex) when (ex is StackExchange.Redis.RedisException or TimeoutException)
        {
            throw new ApiException(503, $"The traffic store cannot be reached: {ex.Message}", ApiErrorTypes.Unavailable, code: "traffic_store_unavailable", retryAfter: TimeSpan.FromSeconds(1));
        }
        return Results.Json(new TrafficPageBody(page.Items, page.NextCursor), ServerJson.Options);
    }

    /// <summary>An ISO 8601 time (<c>2025-03-14T12:00:00Z</c>; without an offset it is UTC).</summary>
    private static DateTimeOffset? Time(string? text, string field)
    {
        if (string.IsNullOrEmpty(text)) return null;
        return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowWhiteSpaces, out var time)
            ? time
            : throw ApiException.Invalid(field, $"'{field}' must be an ISO 8601 time such as 2025-03-14T12:00:00Z.");
    }
}
