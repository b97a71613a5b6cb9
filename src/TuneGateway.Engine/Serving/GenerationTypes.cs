using TuneGateway.Engine.Inference;

namespace TuneGateway.Engine.Serving;

/// <summary>Why a sequence ended. OpenAI's API shows Stop and Length; Abort and Error are ours.</summary>
public enum FinishReason
{
    /// <summary>An end-of-sequence token, a stop token id or a stop string.</summary>
    Stop,
    /// <summary>max_tokens reached.</summary>
    Length,
    /// <summary>The client went away or the request was cancelled.</summary>
    Abort,
    /// <summary>The engine could not finish the request (see the error message).</summary>
    Error,
}

/// <summary>One request for the scheduler: a tokenized prompt, how to sample, and which adapter.</summary>
public sealed record GenerationRequest
{
    public required IReadOnlyList<int> PromptIds { get; init; }
    public required SamplingParams Sampling { get; init; }
    /// <summary>Adapter name, or null for the base model.</summary>
    public string? Adapter { get; init; }
    public string RequestId { get; init; } = Guid.NewGuid().ToString("N");
    /// <summary>Detokenizes and finds stop strings; null to emit token ids only.</summary>
    public ITextStream? Text { get; init; }
    /// <summary>Restricts which tokens may come next (constrained decoding); null for none.</summary>
    public ITokenConstraint? Constraint { get; init; }
}

/// <summary>Incremental text for one sequence: released text and stop-string detection.</summary>
public interface ITextStream
{
    /// <summary>Adds a generated token; returns the text safe to release now.</summary>
    TextStep Append(int tokenId);

    /// <summary>Text still held back when generation ends for another reason than a stop string.</summary>
    string Finish();
}

/// <summary>The outcome of adding one token to an <see cref="ITextStream"/>.</summary>
public readonly record struct TextStep(string Text, bool Stopped, string? StopString = null);

/// <summary>Something that happened to a request; read them in order from <see cref="GenerationHandle.Events"/>.</summary>
public abstract record GenerationEvent;

/// <summary>
/// The prompt's scores (<see cref="SamplingParams.PromptLogprobs"/>), before the first token: for
/// each prompt token its log-probability given the tokens before it and the top alternatives at
/// its position; the first token has none (null), as nothing precedes it.
/// </summary>
public sealed record PromptScored(IReadOnlyList<int> TokenIds, IReadOnlyList<float?> Logprobs, IReadOnlyList<IReadOnlyList<(int TokenId, float Logprob)>?> TopLogprobs)
    : GenerationEvent;

/// <summary>A generated token, with the text it released and its log-probabilities.</summary>
public sealed record TokenGenerated(int TokenId, string Text, float Logprob, IReadOnlyList<(int TokenId, float Logprob)>? TopLogprobs) : GenerationEvent;

/// <summary>
/// The last event of a request. <see cref="TrailingText"/> is text released only now (held back
/// while it could have begun a stop string or was an incomplete character).
/// </summary>
public sealed record GenerationFinished(FinishReason Reason, int PromptTokens, int CompletionTokens, GenerationTimings Timings,
    string TrailingText = "", string? StopString = null, string? Error = null, string? AdapterPath = null) : GenerationEvent;

/// <summary>Where a request's time went, in seconds.</summary>
public sealed record GenerationTimings(double QueueSeconds, double TimeToFirstTokenSeconds, double TotalSeconds, double MeanInterTokenSeconds);
