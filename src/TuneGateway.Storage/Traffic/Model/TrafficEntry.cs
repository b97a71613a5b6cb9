using System.Text.Json.Serialization;

namespace TuneGateway.Storage;

/// <summary>
/// One inference request that went through the gateway, as written to the traffic log.
/// </summary>
/// <remarks>
/// The log is partitioned by <see cref="Adapter"/>: every adapter name has its own stream (Redis) or
/// segment directory (embedded store); requests that were not served by an adapter go to
/// <see cref="NoAdapterStream"/>. Text fields are redacted by the writer before anything is stored.
/// </remarks>
public sealed record TrafficEntry
{
    /// <summary>Name of the log partition for entries whose <see cref="Adapter"/> is <see langword="null"/>.</summary>
    public const string NoAdapterStream = "_none";

    /// <summary>Longest accepted <see cref="Id"/>, <see cref="RequestId"/> or <see cref="Adapter"/>.</summary>
    public const int MaxIdLength = 256;

    /// <summary>
    /// The response id returned to the client (for example <c>chatcmpl-…</c>). It is the primary key of the
    /// log: feedback refers to it, sampling is decided on it, and appending the same id twice stores it once.
    /// </summary>
    public required string Id { get; init; }

    /// <summary>The gateway's correlation id for the HTTP request, when it differs from <see cref="Id"/>.</summary>
    public string? RequestId { get; init; }

    /// <summary>When the gateway received the request.</summary>
    public required DateTimeOffset Timestamp { get; init; }

    /// <summary>Id of the API key that authenticated the request. Never the key itself.</summary>
    public string? ApiKeyId { get; init; }

    /// <summary>The end-user identifier the client supplied (OpenAI <c>user</c> field); redacted like free text.</summary>
    public string? User { get; init; }

    /// <summary>The model name the client asked for.</summary>
    public string? RequestedModel { get; init; }

    /// <summary>Name of the adapter that served the request; <see langword="null"/> for the base model or unresolved names.</summary>
    public string? Adapter { get; init; }

    /// <summary>The adapter version the name resolved to.</summary>
    public string? AdapterVersion { get; init; }

    /// <summary>The A/B arm the request was routed to, if an experiment was running.</summary>
    public string? Arm { get; init; }

    /// <summary>The prompt as the gateway saw it (rendered text or serialized chat messages).</summary>
    public string? Prompt { get; init; }

    /// <summary>The generated text.</summary>
    public string? Completion { get; init; }

    /// <summary>Why generation stopped (<c>stop</c>, <c>length</c>, …).</summary>
    public string? FinishReason { get; init; }

    /// <summary>Number of prompt tokens.</summary>
    public int? PromptTokens { get; init; }

    /// <summary>Number of generated tokens.</summary>
    public int? CompletionTokens { get; init; }

    /// <summary>
    /// Mean log-probability of the generated tokens (of the first choice) as the worker reported it; a
    /// drift signal. <see langword="null"/> when the worker did not report one.
    /// </summary>
    public double? MeanLogprob { get; init; }

    /// <summary>Milliseconds from receiving the request to the first generated token (streaming requests).</summary>
    public double? TimeToFirstTokenMs { get; init; }

    /// <summary>Milliseconds from receiving the request to the end of the response.</summary>
    public double LatencyMs { get; init; }

    /// <summary>HTTP status code returned to the client.</summary>
    public int Status { get; init; }

    /// <summary>Error message when the request failed.</summary>
    public string? Error { get; init; }

    /// <summary>The log partition (stream) this entry belongs to.</summary>
    [JsonIgnore]
    public string StreamName => Adapter ?? NoAdapterStream;

    /// <summary>
    /// Checks the invariants the stores rely on (ids and names are short and free of control characters,
    /// numbers are finite and non-negative).
    /// </summary>
    /// <param name="error">Why the entry is invalid.</param>
    /// <returns><see langword="true"/> when the entry can be stored.</returns>
    public bool IsValid(out string? error)
    {
        error = !IsValidName(Id) ? "Id must be 1-256 characters without control characters."
            : RequestId is not null && !IsValidName(RequestId) ? "RequestId must be 1-256 characters without control characters."
            : Adapter is not null && !IsValidName(Adapter) ? "Adapter must be 1-256 characters without control characters."
            : !double.IsFinite(LatencyMs) || LatencyMs < 0 ? "LatencyMs must be a finite, non-negative number."
            : TimeToFirstTokenMs is { } ttft && (!double.IsFinite(ttft) || ttft < 0) ? "TimeToFirstTokenMs must be a finite, non-negative number."
            : MeanLogprob is { } logprob && !double.IsFinite(logprob) ? "MeanLogprob must be a finite number."
            : PromptTokens < 0 || CompletionTokens < 0 ? "Token counts must not be negative."
            : null;
        return error is null;
    }

    /// <summary>Throws when any entry is invalid (stores call this before writing anything).</summary>
    /// <exception cref="ArgumentException">An entry is null or invalid.</exception>
    internal static void ThrowIfAnyInvalid(IReadOnlyList<TrafficEntry> entries, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(entries, parameterName);
        foreach (var entry in entries)
        {
            if (entry is null)
            {
                throw new ArgumentException("Entries must not be null.", parameterName);
            }

            if (!entry.IsValid(out var error))
            {
                throw new ArgumentException($"Entry '{entry.Id}' is invalid: {error}", parameterName);
            }
        }
    }

    /// <summary>Whether <paramref name="name"/> is usable as an id or adapter name (1-256 characters, no control characters).</summary>
    public static bool IsValidName(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxIdLength)
        {
            return false;
        }

        foreach (var c in name)
        {
            if (char.IsControl(c))
            {
                return false;
            }
        }

        return true;
    }
}
