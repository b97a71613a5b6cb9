namespace TuneGateway.Engine.Inference;

/// <summary>
/// How one request picks its tokens and when it stops. Temperature 0 is greedy decoding.
/// TopK 0 and TopP 1 disable those filters. The same <see cref="Seed"/> gives the same tokens.
/// </summary>
public sealed record SamplingParams
{
    public int MaxTokens { get; init; } = 16;
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    public int TopK { get; init; }
    public long? Seed { get; init; }
    /// <summary>Strings that end generation; they are not part of the returned text.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Token ids that end generation, besides the model's end-of-sequence ids.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Keep generating through end-of-sequence tokens (benchmarks, parity tests).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>
    /// Until this many tokens are generated, end-of-sequence and <see cref="StopTokenIds"/> cannot
    /// be picked and stop strings are not looked for (vLLM's <c>min_tokens</c>).
    /// </summary>
    public int MinTokens { get; init; }
    /// <summary>A matched stop string (or stop token's text) stays in the returned text.</summary>
    public bool IncludeStopStringInOutput { get; init; }
    /// <summary>
    /// Sampled rows drop tokens whose probability (after temperature) is below this fraction of
    /// the most likely token's; 0 disables it (vLLM's <c>min_p</c>).
    /// </summary>
    public double MinP { get; init; }
    /// <summary>
    /// Logits of tokens already in the prompt or the output are divided by this when positive and
    /// multiplied by it when negative; 1 disables it (vLLM's <c>repetition_penalty</c>).
    /// </summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    /// <summary>
    /// Subtracted once from the logit of every token already in the output (OpenAI's
    /// <c>presence_penalty</c>, -2 to 2); 0 disables it.
    /// </summary>
    public double PresencePenalty { get; init; }
    /// <summary>
    /// Subtracted from a token's logit once per time it is already in the output (OpenAI's
    /// <c>frequency_penalty</c>, -2 to 2); 0 disables it.
    /// </summary>
    public double FrequencyPenalty { get; init; }
    /// <summary>Token id → bias added to its logit before sampling (OpenAI's <c>logit_bias</c>, -100 to 100).</summary>
    public IReadOnlyDictionary<int, float> LogitBias { get; init; } = new Dictionary<int, float>();
    /// <summary>Number of most likely alternatives to report with each token (0 = none).</summary>
    public int TopLogprobs { get; init; }
    /// <summary>Report the chosen token's log-probability.</summary>
    public bool Logprobs { get; init; }
    /// <summary>
    /// Score the prompt: each prompt token's log-probability given the tokens before it, with this
    /// many alternatives (vLLM's <c>prompt_logprobs</c>); null: not scored.
    /// </summary>
    public int? PromptLogprobs { get; init; }

    /// <summary>OpenAI's bounds of <see cref="PresencePenalty"/> and <see cref="FrequencyPenalty"/>.</summary>
    public const double MaxPenalty = 2;
    /// <summary>OpenAI's bound of a <see cref="LogitBias"/> value.</summary>
    public const double MaxLogitBias = 100;

    public bool IsGreedy => Temperature <= 0;

    public static SamplingParams Greedy(int maxTokens) => new() { MaxTokens = maxTokens, Temperature = 0 };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public void Validate()
    {
        if (MaxTokens < 1) throw new ArgumentException("max_tokens must be at least 1.", "max_tokens");
        if (double.IsNaN(Temperature) || Temperature < 0 || Temperature > 100) throw new ArgumentException("temperature must be between 0 and 100.", "temperature");
        if (double.IsNaN(TopP) || TopP <= 0 || TopP > 1) throw new ArgumentException("top_p must be in (0, 1].", "top_p");
        if (TopK < -1) throw new ArgumentException("top_k must be -1, 0 (disabled) or positive.", "top_k");
        if (TopLogprobs is < 0 or > 20) throw new ArgumentException("logprobs must be between 0 and 20.", "logprobs");
        if (PromptLogprobs is < 0 or > 20) throw new ArgumentException("prompt_logprobs must be between 0 and 20.", "prompt_logprobs");
        if (Stop.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop strings must not be empty.", "stop");
        if (MinTokens < 0 || MinTokens > MaxTokens) throw new ArgumentException("min_tokens must be between 0 and max_tokens.", "min_tokens");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException("min_p must be between 0 and 1.", "min_p");
        if (!(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty))) throw new ArgumentException("repetition_penalty must be greater than 0.", "repetition_penalty");
        if (!(PresencePenalty >= -MaxPenalty && PresencePenalty <= MaxPenalty)) throw new ArgumentException($"presence_penalty must be between -{MaxPenalty} and {MaxPenalty}.", "presence_penalty");
        if (!(FrequencyPenalty >= -MaxPenalty && FrequencyPenalty <= MaxPenalty)) throw new ArgumentException($"frequency_penalty must be between -{MaxPenalty} and {MaxPenalty}.", "frequency_penalty");
        if (LogitBias.Values.Any(b => !(b >= -MaxLogitBias && b <= MaxLogitBias))) throw new ArgumentException($"logit_bias values must be between -{MaxLogitBias} and {MaxLogitBias}.", "logit_bias");
        if (LogitBias.Keys.Any(t => t < 0)) throw new ArgumentException("logit_bias keys must be token ids (non-negative integers).", "logit_bias");
    }
}
