using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway.Auth;
using TuneGateway.Storage;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// The traffic log's hook in the gateway: maps every proxied exchange to a <see cref="TrafficEntry"/>
/// and hands it to the <see cref="ITrafficLog"/>, which queues it without blocking (opt-out, sampling,
/// redaction and the write to Redis or the embedded store happen there, off the request path).
/// Offline evaluations (<see cref="ProxiedExchange.Evaluation"/>) are not logged.
/// </summary>
public sealed class TrafficLogObserver(ITrafficLog log, ApiKeyStore keys, ILogger<TrafficLogObserver> logger) : IRequestObserver
{
    private static readonly JsonWriterOptions CompactJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public ValueTask OnExchangeCompletedAsync(ProxiedExchange exchange, CancellationToken cancellationToken)
    {
        if (exchange.Evaluation) return ValueTask.CompletedTask;
        var entry = ToEntry(exchange, keys.IsOpen);
        var decision = log.Record(entry);
        if (decision is TrafficLogDecision.Rejected or TrafficLogDecision.Dropped)
            logger.LogDebug("Traffic entry {Id} was not logged: {Decision}", entry.Id, decision);
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// The log entry of an exchange. Its id is the completion id the client got (feedback refers to it);
    /// an answer without one (an error) gets a generated <c>err-…</c> id.
    /// </summary>
    /// <param name="exchange">What the gateway saw.</param>
    /// <param name="openMode">No API keys are configured: there is no key id to record.</param>
    public static TrafficEntry ToEntry(ProxiedExchange exchange, bool openMode)
    {
        // The log partition: the alias called, else the adapter's name without its version; null for a base model.
        string? adapter = exchange.Alias ?? (exchange.ResolvedAdapter is { } served ? NameOf(served) : null);
        string? error = exchange.Error;
        if (error is null && exchange.ClientAborted) error = "The client disconnected before the response was complete.";
        return new TrafficEntry
        {
            Id = exchange.ResponseId is { } id && TrafficEntry.IsValidName(id) ? id : "err-" + Guid.NewGuid().ToString("N"),
            RequestId = TrafficEntry.IsValidName(exchange.RequestId) ? exchange.RequestId : null,
            Timestamp = exchange.StartedAt,
            ApiKeyId = openMode ? null : exchange.ApiKeyName,
            User = exchange.User,
            RequestedModel = exchange.RequestedModel,
            Adapter = adapter,
            AdapterVersion = adapter is null ? null : VersionOf(exchange.ResolvedModel),
            Arm = exchange.Alias is null ? null : exchange.ResolvedModel,
            Prompt = PromptOf(exchange),
            Completion = exchange.Completions.Count > 0 ? exchange.Completions[0] : null,
            FinishReason = exchange.FinishReasons.Count > 0 ? exchange.FinishReasons[0] : null,
            PromptTokens = exchange.PromptTokens,
            CompletionTokens = exchange.CompletionTokens,
            MeanLogprob = exchange.MeanLogprob,
            TimeToFirstTokenMs = exchange.TimeToFirstToken?.TotalMilliseconds,
            LatencyMs = exchange.Duration.TotalMilliseconds,
            Status = exchange.StatusCode,
            Error = error,
        };
    }

    /// <summary><c>name</c> of <c>name@version</c>.</summary>
    private static string NameOf(string model)
    {
        int at = model.IndexOf('@', StringComparison.Ordinal);
        return at > 0 ? model[..at] : model;
    }

    /// <summary><c>version</c> of <c>name@version</c>; null for an unversioned name.</summary>
    private static string? VersionOf(string model)
    {
        int at = model.IndexOf('@', StringComparison.Ordinal);
        return at > 0 && at < model.Length - 1 ? model[(at + 1)..] : null;
    }

    /// <summary>
    /// The prompt as the request carried it: a completion's prompt text as is, any other prompt (token
    /// ids, a batch) and a chat's <c>messages</c> as compact JSON. Null when the body has neither.
    /// </summary>
    private static string? PromptOf(ProxiedExchange exchange)
    {
        try
        {
            using var document = JsonDocument.Parse(exchange.RequestBody);
            if (document.RootElement.ValueKind != JsonValueKind.Object) return null;
            bool chat = exchange.Path.EndsWith("/chat/completions", StringComparison.Ordinal);
            if (!document.RootElement.TryGetProperty(chat ? "messages" : "prompt", out var prompt)) return null;
            return prompt.ValueKind switch
            {
                JsonValueKind.String => prompt.GetString(),
                JsonValueKind.Null or JsonValueKind.Undefined => null,
                _ => Compact(prompt),
            };
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string Compact(JsonElement element)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, CompactJson)) element.WriteTo(writer);
        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}

/// <summary>Hands each exchange to several observers in turn (each one's failure is its own).</summary>
public sealed class CompositeRequestObserver(IReadOnlyList<IRequestObserver> observers, ILogger<CompositeRequestObserver> logger) : IRequestObserver
{
    public async ValueTask OnExchangeCompletedAsync(ProxiedExchange exchange, CancellationToken cancellationToken)
    {
        foreach (var observer in observers)
        {
            try
            {
                await observer.OnExchangeCompletedAsync(exchange, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                logger.LogError(ex, "The request observer {Observer} failed", observer.GetType().Name);
            }
        }
    }
}
