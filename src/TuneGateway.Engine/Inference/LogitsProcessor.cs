using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// The logits processors of one step, in vLLM's order: logit bias, then the penalties (repetition
/// over prompt and output tokens, frequency and presence over the output), then the tokens a row
/// may not pick. Each processor is one or three indexed operations on the flattened [rows × vocab]
/// logits for the whole batch, at the (row, token) entries the rows name: the work is proportional
/// to the tokens the rows have seen, not to rows × vocabulary, and a processor no row uses costs
/// nothing. The host side only lists those entries (a pass over each penalized row's tokens).
/// </summary>
internal static class LogitsProcessor
{
    public static Tensor Apply(Tensor logits, IReadOnlyList<RowSampling> rows)
    {
        if (!rows.Any(r => r.HasLogitBias || r.HasRepetitionPenalty || r.HasOutputPenalty || r.HasBanned)) return logits;
        long vocab = logits.shape[1];
        // A copy: the caller's logits stay raw (the reported log-probabilities come from them).
        var processed = logits.contiguous().clone();
        var flat = processed.view(-1);

        var bias = new TokenEntries(vocab);
        for (int i = 0; i < rows.Count; i++)
            foreach (var (token, value) in rows[i].LogitBias ?? NoBias) bias.Add(i, token, value);
        if (bias.Count > 0) flat.index_add_(0, bias.Index(flat.device), bias.Values(flat.device), 1);

        var repetition = new TokenEntries(vocab);
        for (int i = 0; i < rows.Count; i++)
        {
            if (!rows[i].HasRepetitionPenalty) continue;
            foreach (int token in rows[i].Tokens!.Distinct()) repetition.Add(i, token, (float)rows[i].RepetitionPenalty);
        }
        if (repetition.Count > 0)
        {
            // Divide positive logits, multiply negative ones (vLLM and transformers).
            var index = repetition.Index(flat.device);
            var penalty = repetition.Values(flat.device);
            var seen = flat.index_select(0, index);
            flat.index_copy_(0, index, torch.where(seen > 0, seen / penalty, seen * penalty));
        }

        var output = new TokenEntries(vocab);
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            if (!r.HasOutputPenalty) continue;
            foreach (var (token, count) in OutputCounts(r))
                output.Add(i, token, (float)-(r.FrequencyPenalty * count + r.PresencePenalty));
        }
        if (output.Count > 0) flat.index_add_(0, output.Index(flat.device), output.Values(flat.device), 1);

        BannedTokens.Apply(flat, rows, vocab);
        return processed;
    }

    /// <summary>Each token of the row's output with how often it occurs there.</summary>
    private static Dictionary<int, int> OutputCounts(RowSampling row)
    {
        var counts = new Dictionary<int, int>();
        var tokens = row.Tokens!;
        for (int j = row.PromptLength; j < tokens.Count; j++) counts[tokens[j]] = counts.GetValueOrDefault(tokens[j]) + 1;
        return counts;
    }

    private static readonly Dictionary<int, float> NoBias = [];
}

/// <summary>
/// The tokens a row may not pick this step, set to -inf in place: the end-of-sequence and stop
/// tokens before <c>min_tokens</c>. (Constrained decoding's allowed-token masks, the other way of
/// forbidding tokens, are applied by <see cref="Sampler"/> after all processors.)
/// </summary>
internal static class BannedTokens
{
    public static void Apply(Tensor flatLogits, IReadOnlyList<RowSampling> rows, long vocab)
    {
        var banned = new TokenEntries(vocab);
        for (int i = 0; i < rows.Count; i++)
            foreach (int token in rows[i].Banned ?? []) banned.Add(i, token, 0);
        if (banned.Count > 0) flatLogits.index_fill_(0, banned.Index(flatLogits.device), double.NegativeInfinity);
    }
}

/// <summary>(row, token) entries of a step's flattened logits with a value each; ids outside the vocabulary are skipped.</summary>
internal sealed class TokenEntries(long vocab)
{
    private readonly List<long> _index = [];
    private readonly List<float> _values = [];

    public int Count => _index.Count;

    public void Add(int row, int token, float value)
    {
        if (token < 0 || token >= vocab) return;
        _index.Add(row * vocab + token);
        _values.Add(value);
    }

    public Tensor Index(Device device) => torch.tensor(_index.ToArray(), device: device);

    public Tensor Values(Device device) => torch.tensor(_values.ToArray(), device: device);
}
