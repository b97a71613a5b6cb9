using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>A token chosen for one row, with its log-probability and the top alternatives.</summary>
public readonly record struct SampledToken(int TokenId, float Logprob, (int TokenId, float Logprob)[]? TopLogprobs);

/// <summary>
/// Per-row sampling settings for one step: the filters of the positional parameters (temperature 0
/// is greedy; <paramref name="Uniform"/> is the row's random draw in [0, 1)), then the logits
/// processors (<see cref="LogitsProcessor"/>), each neutral at its default.
/// </summary>
public readonly record struct RowSampling(double Temperature, int TopK, double TopP, int TopLogprobs, double Uniform)
{
    public double MinP { get; init; }
    /// <summary>Over prompt and output tokens, as vLLM and transformers apply it; 1 is neutral.</summary>
    public double RepetitionPenalty { get; init; } = 1;
    /// <summary>Over output tokens, as OpenAI applies it: logit −= presence·[count &gt; 0].</summary>
    public double PresencePenalty { get; init; }
    /// <summary>Over output tokens, as OpenAI applies it: logit −= frequency·count.</summary>
    public double FrequencyPenalty { get; init; }
    /// <summary>The row's prompt then output tokens; read when a penalty is set.</summary>
    public IReadOnlyList<int>? Tokens { get; init; }
    /// <summary>How many of <see cref="Tokens"/> are the prompt (the rest is output).</summary>
    public int PromptLength { get; init; }
    /// <summary>Token id → value added to its logit before the penalties.</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>Tokens the row may not pick this step (end-of-sequence before <c>min_tokens</c>).</summary>
    public IReadOnlyList<int>? Banned { get; init; }
    /// <summary>The only tokens the row may pick (constrained decoding); null for all.</summary>
    public TokenMask? Allowed { get; init; }

    internal bool HasRepetitionPenalty => RepetitionPenalty != 1 && Tokens is { Count: > 0 };
    internal bool HasOutputPenalty => (PresencePenalty != 0 || FrequencyPenalty != 0) && Tokens is not null && Tokens.Count > PromptLength;
    internal bool HasLogitBias => LogitBias is { Count: > 0 };
    internal bool HasBanned => Banned is { Count: > 0 };
}

/// <summary>
/// Picks the next token for every row of a step in a fixed number of batched tensor operations,
/// whatever the mix of greedy and sampled rows and of logits processors. Randomness comes from
/// each request's own seeded generator (a uniform number per step, drawn on the host), so a
/// request's tokens do not depend on which other requests share its batch.
/// Log-probabilities (chosen and top alternatives) are those of the raw model distribution, before
/// logit bias, penalties, masks, temperature and filtering: they say what the model (with its
/// adapter) thinks of a token, so that the traffic log's mean log-probability, drift detection and
/// best_of ranking compare requests whatever sampling settings each used (vLLM's default
/// <c>raw_logprobs</c> makes the same choice).
/// </summary>
public static class Sampler
{
    public static SampledToken[] Sample(Tensor logits, IReadOnlyList<RowSampling> rows)
    {
        int count = rows.Count;
        if (logits.shape[0] != count) throw new ArgumentException("One sampling row per logits row is required.");
        using var scope = torch.NewDisposeScope();
        var device = logits.device;
        var logprobs = logits.log_softmax(-1);
        logits = LogitsProcessor.Apply(logits, rows);
        logits = Restrict(logits, rows, device);

        var chosen = logits.argmax(-1);
        if (rows.Any(r => r.Temperature > 0))
        {
            var sampled = SampleRows(logits, rows, device);
            var isSampled = torch.tensor(rows.Select(r => r.Temperature > 0).ToArray(), device: device);
            chosen = torch.where(isSampled, sampled, chosen);
        }

        var chosenLogprobs = logprobs.gather(1, chosen.unsqueeze(1)).squeeze(1);
        var top = TopAlternatives(logprobs, rows.Select(r => r.TopLogprobs).ToArray());
        long[] ids = chosen.cpu().data<long>().ToArray();
        float[] lp = chosenLogprobs.cpu().data<float>().ToArray();
        var result = new SampledToken[count];
        for (int i = 0; i < count; i++) result[i] = new SampledToken((int)ids[i], lp[i], rows[i].TopLogprobs > 0 ? top[i] : null);
        return result;
    }

    /// <summary>The <paramref name="counts"/>[i] most likely tokens of each row of <paramref name="logprobs"/>, on the host (one top-k for all rows).</summary>
    internal static (int TokenId, float Logprob)[][] TopAlternatives(Tensor logprobs, IReadOnlyList<int> counts)
    {
        int maxTop = counts.Count == 0 ? 0 : counts.Max();
        long[] topIds = [];
        float[] topValues = [];
        if (maxTop > 0)
        {
            var (values, indices) = logprobs.topk(maxTop, dim: 1);
            topIds = indices.cpu().data<long>().ToArray();
            topValues = values.cpu().data<float>().ToArray();
        }
        var result = new (int, float)[counts.Count][];
        for (int i = 0; i < counts.Count; i++)
        {
            result[i] = new (int, float)[counts[i]];
            for (int j = 0; j < counts[i]; j++) result[i][j] = ((int)topIds[i * maxTop + j], topValues[i * maxTop + j]);
        }
        return result;
    }

    /// <summary>
    /// Constrained rows: every token outside the row's allowed set gets -inf, for the whole batch
    /// in one masked_fill (unconstrained rows mask nothing), before greedy and sampled picks alike.
    /// </summary>
    private static Tensor Restrict(Tensor logits, IReadOnlyList<RowSampling> rows, Device device)
    {
        if (!rows.Any(r => r.Allowed is not null)) return logits;
        long vocab = logits.shape[1];
        int width = (int)((vocab + 7) / 8);
        // The masks go to the device as packed bits (a byte per 8 tokens, not a byte per token) and are unpacked there.
        var packed = new byte[rows.Count * width];
        for (int i = 0; i < rows.Count; i++)
        {
            var row = packed.AsSpan(i * width, width);
            if (rows[i].Allowed is { } allowed) allowed.CopyBytes(row);
            else row.Fill(0xFF);
        }
        var bits = torch.tensor(packed, device: device).reshape(rows.Count, width, 1);
        var shifts = torch.arange(8, dtype: ScalarType.Byte, device: device);
        var one = torch.ones(1, dtype: ScalarType.Byte, device: device);
        var allowedBits = bits.bitwise_right_shift(shifts).bitwise_and(one).reshape(rows.Count, width * 8L).narrow(1, 0, vocab);
        return logits.masked_fill(allowedBits.eq(0), double.NegativeInfinity);
    }

    /// <summary>Temperature, min-p, top-k and top-p, then inverse-CDF sampling with each row's uniform draw.</summary>
    private static Tensor SampleRows(Tensor logits, IReadOnlyList<RowSampling> rows, Device device)
    {
        long vocab = logits.shape[1];
        var temperature = RowColumn(rows, r => r.Temperature > 0 ? r.Temperature : 1.0, device);
        var uniform = RowColumn(rows, r => r.Uniform, device);
        var scaled = logits / temperature;
        if (rows.Any(r => r.Temperature > 0 && r.MinP > 0))
        {
            // min_p: drop tokens less likely than min_p times the most likely one (which always stays).
            var all = scaled.softmax(-1);
            var minP = RowColumn(rows, r => r.MinP, device);
            scaled = scaled.masked_fill(all < minP * all.max(-1, keepdim: true).values, double.NegativeInfinity);
        }

        bool filter = rows.Any(r => r.Temperature > 0 && ((r.TopK > 0 && r.TopK < vocab) || r.TopP < 1));
        if (filter) scaled = scaled.masked_fill(TopKTopPKept(scaled, rows, device).logical_not(), double.NegativeInfinity);

        // Inverse CDF in vocabulary order for every row, filtered or not: a row's pick for its draw must
        // not depend on whether another row of the batch needed the sort.
        var cdf = scaled.softmax(-1).cumsum(-1);
        var index = (cdf < uniform * cdf.narrow(1, vocab - 1, 1)).sum(-1);
        return index.clamp_max(vocab - 1);
    }

    /// <summary>
    /// [rows, vocab], true for the tokens top-k and top-p keep (found in sorted order, scattered back
    /// to vocabulary order). Rows without a filter keep everything: their top_p counts as infinite,
    /// so that rounding in the cumulative sum cannot drop their least likely tokens.
    /// </summary>
    private static Tensor TopKTopPKept(Tensor scaled, IReadOnlyList<RowSampling> rows, Device device)
    {
        long vocab = scaled.shape[1];
        var (sorted, order) = scaled.sort(-1, descending: true);
        var rank = torch.arange(vocab, device: device).unsqueeze(0);
        var topK = torch.tensor(rows.Select(r => (long)(r.TopK > 0 ? Math.Min(r.TopK, vocab) : vocab)).ToArray(), device: device).unsqueeze(1);
        var keep = rank < topK;
        var probs = sorted.masked_fill(keep.logical_not(), double.NegativeInfinity).softmax(-1);
        var topP = RowColumn(rows, r => r.TopP < 1 ? r.TopP : double.PositiveInfinity, device);
        // Keep a token while the mass before it is below top_p; the most likely token always stays.
        var before = probs.cumsum(-1) - probs;
        keep = keep.logical_and((before < topP).logical_or(rank == 0));
        return torch.zeros_like(keep).scatter_(1, order, keep);
    }

    /// <summary>One float per row as a [rows, 1] column, to broadcast over the vocabulary.</summary>
    internal static Tensor RowColumn(IReadOnlyList<RowSampling> rows, Func<RowSampling, double> value, Device device) =>
        torch.tensor(rows.Select(r => (float)value(r)).ToArray(), device: device).unsqueeze(1);
}
