using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace TuneGateway.Storage;

/// <summary>
/// Validates feedback, applies the privacy policy and stores it linked to the logged request.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Feedback from an opted-out key, or for a request outside the sample, is accepted and not stored
/// (<see cref="FeedbackStatus.NotRecorded"/>): the sampling decision is the same hash the traffic log used.</item>
/// <item>If the request is still in the writer's queue, the service waits up to
/// <see cref="TrafficLogOptions.FeedbackPendingWait"/> for it to be written.</item>
/// <item>Feedback for a request logged under another API key is answered as unknown, so ids of other
/// keys' requests cannot be probed.</item>
/// <item>Correction and comment are redacted like prompts.</item>
/// </list>
/// </remarks>
public sealed class FeedbackService : IFeedbackService
{
    private static readonly TimeSpan PendingPollInterval = TimeSpan.FromMilliseconds(20);

    private readonly ITrafficStore _store;
    private readonly ITrafficLog? _log;
    private readonly TrafficPrivacyPolicy _policy;
    private readonly TrafficLogOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    /// <summary>Creates the service.</summary>
    /// <param name="store">Where feedback is stored.</param>
    /// <param name="policy">Opt-out, sampling and redaction.</param>
    /// <param name="options">Options (for <see cref="TrafficLogOptions.FeedbackPendingWait"/>).</param>
    /// <param name="log">The traffic log, to notice requests that are still queued.</param>
    /// <param name="timeProvider">Clock for waiting.</param>
    /// <param name="logger">Logger.</param>
    public FeedbackService(
        ITrafficStore store,
        TrafficPrivacyPolicy policy,
        IOptions<TrafficLogOptions> options,
        ITrafficLog? log = null,
        TimeProvider? timeProvider = null,
        ILogger<FeedbackService>? logger = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _policy = policy ?? throw new ArgumentNullException(nameof(policy));
        _options = options.Value;
        _log = log;
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? (ILogger)NullLogger.Instance;
    }

    /// <inheritdoc />
    public async Task<FeedbackResult> SubmitAsync(FeedbackRequest request, string? apiKeyId, CancellationToken cancellationToken = default)
    {
        if (request is null || !TrafficEntry.IsValidName(request.Id))
        {
            return new FeedbackResult(FeedbackStatus.Invalid, Error: "id must be the completion id the API returned.", Param: "id");
        }

        if (!FeedbackRating.TryNormalize(request, out var rating, out var ratingParam, out var ratingError))
        {
            return new FeedbackResult(FeedbackStatus.Invalid, Error: ratingError, Param: ratingParam);
        }

        if (_policy.IsOptedOut(apiKeyId) || !_policy.IsSampled(request.Id))
        {
            return new FeedbackResult(FeedbackStatus.NotRecorded, Error: "Feedback accepted; the request was not logged.");
        }

        try
        {
            var record = await FindAsync(request.Id, cancellationToken).ConfigureAwait(false);
            if (record is null || (apiKeyId is not null && record.Entry.ApiKeyId is not null && record.Entry.ApiKeyId != apiKeyId))
            {
                return new FeedbackResult(FeedbackStatus.NotFound, Error: $"No logged request has id '{request.Id}'.");
            }

            var input = new FeedbackInput(
                request.Id,
                rating.Value,
                rating.Scale,
                rating.Score,
                _policy.RedactText(request.Correction),
                _policy.RedactText(request.Comment),
                apiKeyId);
            return await _store.UpsertFeedbackAsync(input, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning(ex, "Could not store feedback for {Id}.", request.Id);
            return new FeedbackResult(FeedbackStatus.Unavailable, Error: "Feedback could not be stored; try again later.");
        }
    }

    private async Task<TrafficRecord?> FindAsync(string id, CancellationToken cancellationToken)
    {
        // Ask before reading: the writer forgets an id only after the store has it, so an id that is not
        // pending now is either in the store already or was never logged.
        var pending = _log?.IsPending(id) ?? false;
        var record = await _store.GetAsync(id, cancellationToken).ConfigureAwait(false);
        if (record is not null || !pending)
        {
            return record;
        }

        // The request is still on its way to the store (queued, or spilled during an outage).
        var deadline = _time.GetUtcNow() + _options.FeedbackPendingWait;
        while (_log!.IsPending(id) && _time.GetUtcNow() < deadline)
        {
            await Task.Delay(PendingPollInterval, _time, cancellationToken).ConfigureAwait(false);
        }

        return await _store.GetAsync(id, cancellationToken).ConfigureAwait(false);
    }
}
