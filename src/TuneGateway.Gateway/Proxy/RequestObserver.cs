using System.Diagnostics;
using System.Text;
using System.Text.Json;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Gateway.Proxy;

/// <summary>
/// Sees every request the gateway proxied, once it is over (streaming included): the traffic log
/// hooks in here. Called on the thread pool after the response has been sent, so it delays neither
/// the client nor the next request on its connection; exchanges may therefore arrive slightly out of
/// order. An observer that needs time should still queue the exchange rather than block (every
/// exchange runs one call). Exceptions are logged and ignored.
/// </summary>
public interface IRequestObserver
{
    ValueTask OnExchangeCompletedAsync(ProxiedExchange exchange, CancellationToken cancellationToken);
}

/// <summary>The default observer: does nothing, and the gateway then captures nothing.</summary>
public sealed class NullRequestObserver : IRequestObserver
{
    public static readonly NullRequestObserver Instance = new();

    public ValueTask OnExchangeCompletedAsync(ProxiedExchange exchange, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}

/// <summary>One proxied request and its response, as a <see cref="IRequestObserver"/> sees it.</summary>
public sealed record ProxiedExchange
{
    public required string RequestId { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    /// <summary>Request path, e.g. <c>/v1/chat/completions</c>.</summary>
    public required string Path { get; init; }
    /// <summary>The request body as forwarded (with <c>model</c> rewritten to the version when an alias was called).</summary>
    public required ReadOnlyMemory<byte> RequestBody { get; init; }
    /// <summary>The API key's name (never the key).</summary>
    public string? ApiKeyName { get; init; }
    public string? User { get; init; }
    public required string RequestedModel { get; init; }
    /// <summary>The concrete model or adapter version that served the request.</summary>
    public required string ResolvedModel { get; init; }
    /// <summary>The adapter <see cref="ResolvedModel"/> names (null when it is a base model the workers serve).</summary>
    public string? ResolvedAdapter { get; init; }
    /// <summary>The alias called, when it was one; then <see cref="ResolvedModel"/> is the A/B arm.</summary>
    public string? Alias { get; init; }
    public string? WorkerUrl { get; init; }
    /// <summary>Workers tried (2 when the first failed before answering).</summary>
    public int Attempts { get; init; }
    public required int StatusCode { get; init; }
    /// <summary>The <c>id</c> of the answer or of its chunks (<c>cmpl-…</c>, <c>chatcmpl-…</c>); null for an error answer.</summary>
    public string? ResponseId { get; init; }
    public bool Stream { get; init; }
    /// <summary>Time from the request's arrival to the first response byte sent to the client.</summary>
    public TimeSpan? TimeToFirstByte { get; init; }
    /// <summary>Time to the first byte carrying generated text (streaming), else to the response.</summary>
    public TimeSpan? TimeToFirstToken { get; init; }
    public required TimeSpan Duration { get; init; }
    /// <summary>The generated text of each choice, in index order (from the JSON answer or the SSE chunks).</summary>
    public IReadOnlyList<string> Completions { get; init; } = [];
    public IReadOnlyList<string?> FinishReasons { get; init; } = [];
    public int? PromptTokens { get; init; }
    public int? CompletionTokens { get; init; }
    /// <summary>Mean log-probability of the first choice's tokens, as the worker reported it (<see cref="Common.MeanLogprob"/>).</summary>
    public double? MeanLogprob { get; init; }
    /// <summary>
    /// The request is an offline evaluation, not user traffic: it carried
    /// <c>X-TuneGateway-Evaluation: true</c> from a key with the mlops, operator or admin role.
    /// </summary>
    public bool Evaluation { get; init; }
    /// <summary>The error message of an error answer (or an SSE error event).</summary>
    public string? Error { get; init; }
    /// <summary>The client went away before the response was complete.</summary>
    public bool ClientAborted { get; init; }
}

/// <summary>
/// Wraps the client's response stream: every write passes straight through (and is flushed as the
/// proxy flushes it), while a copy of what matters is taken on the side: SSE chunks are parsed as
/// they pass, a JSON answer is kept (up to a cap) and parsed at the end.
/// </summary>
internal sealed class ObservingResponseStream(Stream inner, Microsoft.AspNetCore.Http.HttpResponse response, long startTimestamp) : Stream
{
    private const int MaxCaptured = 4 << 20;
    private readonly Sse.Parser _sse = new();
    private readonly MemoryStream _body = new();
    private readonly SortedDictionary<int, StringBuilder> _texts = [];
    private readonly SortedDictionary<int, string?> _finish = [];

    private bool? _isEventStream;

    /// <summary>The response is an event stream (decided by its content type when the first byte passes).</summary>
    public bool IsEventStream => _isEventStream ??= response.ContentType?.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase) == true;
    public TimeSpan? FirstByte { get; private set; }
    public TimeSpan? FirstToken { get; private set; }
    public int? PromptTokens { get; private set; }
    public int? CompletionTokens { get; private set; }
    public string? Error { get; private set; }
    /// <summary>The <c>id</c> of the JSON answer or of the first chunk that had one.</summary>
    public string? Id { get; private set; }
    /// <summary>From the <see cref="Common.MeanLogprob.StreamField"/> of a chunk, or the <see cref="Common.MeanLogprob.Header"/> of an answer.</summary>
    public double? MeanLogprob { get; private set; }

    private void Observe(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return;
        FirstByte ??= Stopwatch.GetElapsedTime(startTimestamp);
        if (IsEventStream) _sse.Feed(bytes, OnEvent);
        else if (_body.Length + bytes.Length <= MaxCaptured) _body.Write(bytes);
    }

    private void OnEvent(string data)
    {
        if (data == "[DONE]") return;
        try
        {
            using var document = JsonDocument.Parse(data);
            bool text = Read(document.RootElement, delta: true);
            if (text) FirstToken ??= Stopwatch.GetElapsedTime(startTimestamp);
        }
        catch (JsonException)
        {
        }
    }

    /// <summary>Takes choices' text, finish reasons, usage and errors from a chunk or an answer; true when it carried text.</summary>
    private bool Read(JsonElement root, bool delta)
    {
        bool carried = false;
        if (root.ValueKind != JsonValueKind.Object) return false;
        if (Id is null && root.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String) Id = id.GetString();
        if (root.TryGetProperty(Common.MeanLogprob.StreamField, out var mean) && mean.ValueKind == JsonValueKind.Number
            && mean.TryGetDouble(out double value) && double.IsFinite(value)) MeanLogprob = value;
        if (root.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var message))
            Error = message.ToString();
        if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
        {
            if (usage.TryGetProperty("prompt_tokens", out var p) && p.TryGetInt32(out int prompt)) PromptTokens = prompt;
            if (usage.TryGetProperty("completion_tokens", out var c) && c.TryGetInt32(out int completion)) CompletionTokens = completion;
        }
        if (!root.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array) return false;
        foreach (var choice in choices.EnumerateArray())
        {
            int index = choice.TryGetProperty("index", out var i) && i.TryGetInt32(out int n) ? n : 0;
            string? piece = null;
            if (choice.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String) piece = t.GetString();
            else if (choice.TryGetProperty(delta ? "delta" : "message", out var m) && m.ValueKind == JsonValueKind.Object
                && m.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String) piece = content.GetString();
            if (!_texts.TryGetValue(index, out var builder)) _texts[index] = builder = new StringBuilder();
            if (!string.IsNullOrEmpty(piece))
            {
                builder.Append(piece);
                carried = true;
            }
            if (choice.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String) _finish[index] = f.GetString();
        }
        return carried;
    }

    /// <summary>Parses a captured JSON answer; call once the response is complete (the response itself may be gone by then).</summary>
    /// <param name="meanLogprobHeader">The answer's <see cref="Common.MeanLogprob.Header"/>, read while the response was there.</param>
    public void Complete(string? meanLogprobHeader)
    {
        MeanLogprob ??= Common.MeanLogprob.Parse(meanLogprobHeader);
        if (IsEventStream || _body.Length == 0) return;
        try
        {
            using var document = JsonDocument.Parse(_body.GetBuffer().AsMemory(0, (int)_body.Length));
            Read(document.RootElement, delta: false);
            FirstToken = FirstByte;
        }
        catch (JsonException)
        {
        }
    }

    public IReadOnlyList<string> Texts => _texts.Values.Select(b => b.ToString()).ToArray();
    public IReadOnlyList<string?> FinishReasons => _texts.Keys.Select(k => _finish.GetValueOrDefault(k)).ToArray();

    public override void Write(byte[] buffer, int offset, int count)
    {
        Observe(buffer.AsSpan(offset, count));
        inner.Write(buffer, offset, count);
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Observe(buffer);
        inner.Write(buffer);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        Observe(buffer.AsSpan(offset, count));
        return inner.WriteAsync(buffer, offset, count, cancellationToken);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Observe(buffer.Span);
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override void Flush() => inner.Flush();
    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _body.Dispose();
        base.Dispose(disposing);
    }
}
