using TuneGateway.Storage;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// The first step of the gateway's proxy pipeline, around YARP's load balancing, passive health
/// and forwarding: reads the request's <c>model</c> and <c>user</c>, resolves an alias to its
/// A/B arm (rewriting <c>model</c> in the forwarded body), tells the load-balancing policy what the
/// request needs, retries once on another worker when forwarding failed before anything reached
/// the client, answers failures in OpenAI's shape, and hands the exchange to the
/// <see cref="IRequestObserver"/> without buffering the response.
/// </summary>
public sealed class GatewayProxyMiddleware(RequestDelegate next, AliasResolver aliases, WorkerRegistry registry, IRequestObserver observer,
    GatewayMetrics metrics, ILogger<GatewayProxyMiddleware> logger)
{
    public const string UserHeader = WireHeaders.User;
    /// <summary>
    /// <c>X-TuneGateway-Evaluation: true</c> marks a request as an offline evaluation (the retraining
    /// loop's), which the traffic log leaves out; honoured only from keys with the mlops, operator or admin role.
    /// </summary>
    public const string EvaluationHeader = WireHeaders.Evaluation;
    private const int MaxBody = 16 << 20;

    public async Task InvokeAsync(HttpContext context)
    {
        long start = Stopwatch.GetTimestamp();
        var startedAt = DateTimeOffset.UtcNow;
        byte[] body = await ReadBodyAsync(context.Request).ConfigureAwait(false);
        var target = Resolve(context, ref body);
        context.Features.Set(target);

        // The forwarded body is the (possibly rewritten) buffer: replayable for a retry.
        var replay = new MemoryStream(body, writable: false);
        context.Request.Body = replay;
        context.Request.ContentLength = body.Length;
        context.Request.Headers.Remove("Transfer-Encoding");
        context.Features.Set<IHttpMaxRequestBodySizeFeature>(new BufferedBodySizeFeature());

        ObservingResponseStream? capture = null;
        Stream? clientBody = null;
        if (observer is not NullRequestObserver && GatewayProxyConfig.IsGeneration(context.Request.Path))
        {
            clientBody = context.Response.Body;
            capture = new ObservingResponseStream(clientBody, context.Response, start);
            context.Response.Body = capture;
        }

        var proxy = context.GetReverseProxyFeature();
        var candidates = proxy.AvailableDestinations;
        int attempts = 0;
        IForwarderErrorFeature? error;
        while (true)
        {
            attempts++;
            await next(context).ConfigureAwait(false);
            error = context.Features.Get<IForwarderErrorFeature>();
            if (error is null || error.Error == ForwarderError.NoAvailableDestinations || attempts >= 2
                || context.Response.HasStarted || context.RequestAborted.IsCancellationRequested)
                break;
            var failed = proxy.ProxiedDestination;
            // It could not be reached: routing and /admin/workers leave it until it reports again.
            if (error.Error == ForwarderError.Request && failed is not null) registry.MarkUnreachable(failed.DestinationId);
            var rest = candidates.Where(d => d != failed).ToArray();
            if (rest.Length == 0) break;
            logger.LogWarning("Forwarding {Model} to {Worker} failed before any response ({Error}); retrying on another worker",
                target.Model, failed?.DestinationId, error.Error);
            metrics.Retried();
            proxy.AvailableDestinations = rest;
            context.Features.Set<IForwarderErrorFeature>(null);
            context.Response.StatusCode = StatusCodes.Status200OK;
            replay.Position = 0;
        }

        if (error is not null && !context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
            await ApiErrors.WriteAsync(context, ForwardingError(error, target)).ConfigureAwait(false);

        metrics.Proxied(target, context.Response.StatusCode);
        if (capture is not null)
        {
            context.Response.Body = clientBody!;
            // End the response first: the client (and the next request on its connection) never waits for the observer.
            await CompleteResponseAsync(context).ConfigureAwait(false);
            var duration = Stopwatch.GetElapsedTime(start);
            // What the exchange needs from the HttpContext is read now; the context is recycled once this method returns.
            bool stream = capture.IsEventStream;
            string? meanLogprobHeader = context.Response.Headers[MeanLogprob.Header];
            var exchange = new ProxiedExchange
            {
                RequestId = context.TraceIdentifier,
                StartedAt = startedAt,
                Path = context.Request.Path,
                RequestBody = body,
                ApiKeyName = context.Features.Get<ApiKeyIdentity>()?.Name,
                User = target.User,
                RequestedModel = target.RequestedModel,
                ResolvedModel = target.Model,
                ResolvedAdapter = target.Adapter,
                Alias = target.Alias,
                WorkerUrl = proxy.ProxiedDestination?.DestinationId,
                Attempts = attempts,
                StatusCode = context.Response.StatusCode,
                Stream = stream,
                Duration = duration,
                Evaluation = IsEvaluation(context),
                Error = error?.Exception?.Message,
                ClientAborted = context.RequestAborted.IsCancellationRequested,
            };
            // Parsing the captured answer and the observer run on the thread pool, off the request's path.
            _ = Task.Run(() => ObserveAsync(capture, exchange, meanLogprobHeader));
        }
    }

    /// <summary>Completes the exchange from what the response stream captured and hands it to the observer.</summary>
    private async Task ObserveAsync(ObservingResponseStream capture, ProxiedExchange partial, string? meanLogprobHeader)
    {
        try
        {
            ProxiedExchange exchange;
            await using (capture.ConfigureAwait(false))
            {
                capture.Complete(meanLogprobHeader);
                exchange = partial with
                {
                    ResponseId = capture.Id,
                    TimeToFirstByte = capture.FirstByte,
                    TimeToFirstToken = capture.FirstToken,
                    Completions = capture.Texts,
                    FinishReasons = capture.FinishReasons,
                    PromptTokens = capture.PromptTokens,
                    CompletionTokens = capture.CompletionTokens,
                    MeanLogprob = capture.MeanLogprob,
                    Error = capture.Error ?? partial.Error,
                };
            }
            await observer.OnExchangeCompletedAsync(exchange, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "A request observer failed");
        }
    }

    /// <summary>Sends the end of the response (the last chunk of a chunked body) unless the client is gone or the response is broken.</summary>
    private async Task CompleteResponseAsync(HttpContext context)
    {
        if (context.RequestAborted.IsCancellationRequested) return;
        try
        {
            await context.Response.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or OperationCanceledException)
        {
            logger.LogDebug(ex, "Could not complete the response before observing it");
        }
    }

    /// <summary>Whether the request asks to be treated as an offline evaluation and its key may ask that.</summary>
    private static bool IsEvaluation(HttpContext context) =>
        string.Equals(context.Request.Headers[EvaluationHeader], "true", StringComparison.OrdinalIgnoreCase)
        && context.Features.Get<ApiKeyIdentity>() is { } identity
        && (identity.Roles.Contains(Roles.Mlops) || identity.Roles.Contains(Roles.Operator) || identity.Roles.Contains(Roles.Admin));

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request)
    {
        if (request.ContentLength > MaxBody) throw new ApiException(StatusCodes.Status413PayloadTooLarge, $"The request body exceeds {MaxBody} bytes.", ApiErrorTypes.InvalidRequest);
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, request.HttpContext.RequestAborted).ConfigureAwait(false);
        if (buffer.Length > MaxBody) throw new ApiException(StatusCodes.Status413PayloadTooLarge, $"The request body exceeds {MaxBody} bytes.", ApiErrorTypes.InvalidRequest);
        return buffer.ToArray();
    }

    /// <summary>Reads model, user and stream; resolves an alias (rewriting <paramref name="body"/>); checks the key's models.</summary>
    private GatewayRoute Resolve(HttpContext context, ref byte[] body)
    {
        JsonObject request;
        try
        {
            request = JsonNode.Parse(body) as JsonObject ?? throw new ApiException(400, "The request body must be a JSON object.", ApiErrorTypes.InvalidRequest);
        }
        catch (JsonException ex)
        {
            throw new ApiException(400, $"The request body is not valid JSON: {ex.Message}", ApiErrorTypes.InvalidRequest);
        }
        string model = request["model"] is JsonValue m && m.TryGetValue(out string? s) && s.Length > 0
            ? s : throw ApiException.Invalid("model", "'model' is required.");
        string? user = request["user"] is JsonValue u && u.TryGetValue(out string? us) && us.Length > 0 ? us : null;
        user ??= context.Request.Headers[UserHeader].FirstOrDefault() is { Length: > 0 } header ? header : null;
        bool stream = request["stream"] is JsonValue st && st.TryGetValue(out bool b) && b;
        AuthSetup.EnsureModelAllowed(context, model);

        var assignment = aliases.Resolve(model, user);
        string concrete = assignment?.Model ?? model;
        if (assignment is not null)
        {
            request["model"] = concrete;
            body = JsonSerializer.SerializeToUtf8Bytes(request);
        }
        var bases = registry.BaseModels();
        bool isBase = bases.Contains(concrete);
        string? baseModel = isBase ? concrete
            : assignment?.BaseModel
              ?? registry.All.FirstOrDefault(w => w.State?.LoadedAdapters.Contains(concrete) == true)?.State?.BaseModel
              ?? (bases.Count == 1 ? bases.First() : null);
        return new GatewayRoute
        {
            RequestedModel = model,
            Model = concrete,
            Adapter = isBase ? null : concrete,
            BaseModel = baseModel,
            Alias = assignment?.Alias,
            User = user,
            Stream = stream,
        };
    }

    private static ApiException ForwardingError(IForwarderErrorFeature error, GatewayRoute target) => error.Error switch
    {
        ForwarderError.NoAvailableDestinations => new ApiException(StatusCodes.Status503ServiceUnavailable,
            $"No healthy worker is available to serve '{target.Model}'.", ApiErrorTypes.Unavailable, code: "no_worker_available", retryAfter: TimeSpan.FromSeconds(1)),
        ForwarderError.RequestTimedOut => new ApiException(StatusCodes.Status504GatewayTimeout,
            "The worker did not answer in time.", ApiErrorTypes.Server, code: "upstream_timeout"),
        _ => new ApiException(StatusCodes.Status502BadGateway,
            $"The worker serving '{target.Model}' failed ({error.Error}).", ApiErrorTypes.Server, code: "upstream_error"),
    };

    /// <summary>The body was read into memory already: nothing left to limit, and YARP may lift the limit without a warning.</summary>
    private sealed class BufferedBodySizeFeature : IHttpMaxRequestBodySizeFeature
    {
        public bool IsReadOnly => false;
        public long? MaxRequestBodySize { get; set; }
    }
}
