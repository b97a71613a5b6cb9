using System.Text.Json.Serialization;

namespace TuneGateway.Worker;

// The response bodies of the OpenAI-compatible API, serialized with ServerJson.Options (snake_case).
// Fields OpenAI always sends are always written (null when empty); our extensions only when set.

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens);

public sealed record CompletionResponse(string Id, string Object, long Created, string Model, IReadOnlyList<CompletionChoice> Choices, Usage? Usage)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public object? PromptTokenIds { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? SystemFingerprint { get; init; }
}

public sealed record CompletionChoice(int Index, string Text, CompletionLogprobs? Logprobs, string? FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? TokenIds { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? PromptTokenIds { get; init; }
}

/// <summary>OpenAI's legacy logprobs; with echo the first prompt token has a null log-probability and null alternatives.</summary>
public sealed record CompletionLogprobs(IReadOnlyList<string> Tokens, IReadOnlyList<float?> TokenLogprobs,
    IReadOnlyList<IReadOnlyDictionary<string, float>?> TopLogprobs, IReadOnlyList<int> TextOffset);

public sealed record CompletionChunk(string Id, string Object, long Created, string Model, IReadOnlyList<CompletionChoice> Choices)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; init; }
    /// <summary>Extension on the last chunk: the mean log-probability of the first choice's tokens (see <c>Gateway.Common.MeanLogprob</c>).</summary>
    [JsonPropertyName(Gateway.Common.MeanLogprob.StreamField)]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? MeanLogprob { get; init; }
}

public sealed record ChatCompletionResponse(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage? Usage)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? PromptTokenIds { get; init; }
}

public sealed record ChatChoice(int Index, ChatMessageOut Message, ChatLogprobs? Logprobs, string? FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? TokenIds { get; init; }
}

public sealed record ChatMessageOut(string Role, string? Content)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<ToolCallOut>? ToolCalls { get; init; }
}

/// <summary>A tool call of an answer; <see cref="ToolCallFunctionOut.Arguments"/> is JSON text, as OpenAI sends it.</summary>
public sealed record ToolCallOut(string Id, string Type, ToolCallFunctionOut Function);

public sealed record ToolCallFunctionOut(string Name, string Arguments);

public sealed record ChatLogprobs(IReadOnlyList<ChatTokenLogprob> Content);

public sealed record ChatTokenLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes, IReadOnlyList<ChatTopLogprob> TopLogprobs);

public sealed record ChatTopLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes);

public sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; init; }
    /// <summary>Extension on the last chunk: the mean log-probability of the first choice's tokens (see <c>Gateway.Common.MeanLogprob</c>).</summary>
    [JsonPropertyName(Gateway.Common.MeanLogprob.StreamField)]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? MeanLogprob { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? PromptTokenIds { get; init; }
}

public sealed record ChatChunkChoice(int Index, ChatDelta Delta, ChatLogprobs? Logprobs, string? FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? TokenIds { get; init; }
}

public sealed record ChatDelta
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Role { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Content { get; init; }
    /// <summary>Tool-call fragments: the first per call with its id, type and name, then argument text (null members left out).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<Tools.ToolCallDelta>? ToolCalls { get; init; }
}

/// <summary>vLLM's <c>/tokenize</c> answer; <c>token_strs</c> only with <c>return_token_strs</c>.</summary>
public sealed record TokenizeResponse(int Count, int MaxModelLen, IReadOnlyList<int> Tokens, IReadOnlyList<string>? TokenStrs);

/// <summary>vLLM's <c>/detokenize</c> answer.</summary>
public sealed record DetokenizeResponse(string Prompt);
