using System.Globalization;
using System.Text.Json;
using TuneGateway.Engine.Inference;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>
/// The request fields that shape sampling and choices and need more than a range check:
/// <c>logit_bias</c>, the two names of the token limit, and <c>best_of</c> (its selection included).
/// </summary>
internal static class SamplingFields
{
    /// <summary>
    /// The most alternatives <c>logprobs</c> (completions) and <c>top_logprobs</c> (chat) may ask
    /// for: OpenAI's chat bound, which vLLM applies to both endpoints.
    /// </summary>
    public const int MaxTopLogprobs = 20;

    /// <summary>
    /// The token limit from the first of <paramref name="fields"/> given (chat: <c>max_completion_tokens</c>,
    /// then the deprecated <c>max_tokens</c>); both given with different values is a 400, since one
    /// of them would be silently ignored.
    /// </summary>
    public static int? MaxTokens(RequestFields f, IReadOnlyList<string> fields)
    {
        // Every field is read, so that none counts as ignored.
        var given = fields.Select(field => (Field: field, Value: f.Int(field, 1, int.MaxValue))).Where(g => g.Value is not null).ToArray();
        if (given.Select(g => g.Value).Distinct().Count() > 1)
            throw ApiException.Invalid(given[0].Field, $"'{given[0].Field}' and '{given[1].Field}' differ ({given[0].Value} and {given[1].Value}); send one of them.");
        return given.Length > 0 ? given[0].Value : null;
    }

    /// <summary>
    /// <c>logit_bias</c>: an object whose keys are token ids written as strings (OpenAI's form) and
    /// whose values are biases from -100 to 100; 400 naming <c>logit_bias</c> otherwise.
    /// </summary>
    public static IReadOnlyDictionary<int, float> LogitBias(RequestFields f, int vocabSize)
    {
        if (f.Get("logit_bias") is not { } value) return new Dictionary<int, float>();
        if (value.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("logit_bias", "'logit_bias' must be an object mapping token ids to biases.");
        var bias = new Dictionary<int, float>();
        foreach (var entry in value.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int token) || token >= vocabSize)
                throw ApiException.Invalid("logit_bias", $"'logit_bias' key '{entry.Name}' is not a token id (0 to {vocabSize - 1}).");
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetDouble(out double b) || !(Math.Abs(b) <= SamplingParams.MaxLogitBias))
                throw ApiException.Invalid("logit_bias", $"'logit_bias' values must be numbers from -{SamplingParams.MaxLogitBias} to {SamplingParams.MaxLogitBias}; token {token} has {entry.Value.GetRawText()}.");
            bias[token] = (float)b;
        }
        return bias;
    }

    /// <summary>
    /// <c>best_of</c> (completions): at least <c>n</c>; more than <c>n</c> generates that many
    /// candidates per prompt, which cannot be streamed (OpenAI refuses it too: the best are known
    /// only at the end).
    /// </summary>
    public static GenerationPlan ApplyBestOf(GenerationPlan plan, int? bestOf, int maxChoices)
    {
        if (bestOf is not int candidates || candidates == plan.N) return plan;
        if (candidates < plan.N) throw ApiException.Invalid("best_of", $"'best_of' ({candidates}) must be at least n ({plan.N}).");
        if (plan.Stream) throw ApiException.Invalid("best_of", "'best_of' greater than n cannot be streamed.");
        if (candidates * plan.Prompts.Count > maxChoices)
            throw ApiException.Invalid("best_of", $"At most {maxChoices} candidates per request (prompts × best_of).");
        return plan with { BestOf = candidates };
    }

    /// <summary>
    /// The <c>n</c> candidates of each prompt with the highest cumulative log-probability (of the
    /// raw model distribution, as the sampler reports it), in that order, renumbered as the
    /// choices of the answer: prompt-major, as without <c>best_of</c>.
    /// </summary>
    public static IReadOnlyList<ChoiceResult> SelectBest(IReadOnlyList<ChoiceResult> candidates, int n)
    {
        var best = candidates
            .GroupBy(c => c.PromptIndex)
            .OrderBy(g => g.Key)
            .SelectMany(g => g.OrderByDescending(c => c.Tokens.Sum(t => (double)t.Logprob)).ThenBy(c => c.Index).Take(n))
            .ToArray();
        for (int i = 0; i < best.Length; i++) best[i].Index = i;
        return best;
    }
}
