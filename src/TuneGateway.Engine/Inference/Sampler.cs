using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>A token chosen for one row, with its log-probability and the top alternatives.</summary>
public readonly record struct SampledToken(int TokenId, float Logprob, (int TokenId, float Logprob)[]? TopLogprobs);

/// <summary>
/// Per-row sampling settings for one step. <paramref name="Seen"/>: the row's prompt and output
/// tokens, read when <paramref name="RepetitionPenalty"/> is not 1; <paramref name="Banned"/>:
/// tokens the row may not pick this step (end-of-sequence before <c>min_tokens</c>);
/// <paramref name="Allowed"/>: the only tokens the row may pick (constrained decoding), null for all.
/// </summary>
public readonly record struct RowSampling(double Temperature, int TopK, double TopP, int TopLogprobs, double Uniform,
    double MinP = 0, double RepetitionPenalty = 1, IReadOnlyList<int>? Seen = null, IReadOnlyList<int>? Banned = null, TokenMask? Allowed = null)
{
    internal bool Penalized => RepetitionPenalty != 1 && Seen is { Count: > 0 };
    internal bool HasBanned => Banned is { Count: > 0 };
}

/// <summary>
/// Picks the next token for every row of a step in a fixed number of batched tensor operations,
/// whatever the mix of greedy and sampled rows. Randomness comes from each request's own seeded
/// generator (a uniform number per step, drawn on the host), so a request's tokens do not depend
/// on which other requests share its batch. Log-probabilities are those of the raw model
/// distribution, before penalties, temperature and filtering.
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
        logits = Penalize(logits, rows, device);
        logits = Restrict(logits, rows, device);

        var chosen = logits.argmax(-1);
        if (rows.Any(r => r.Temperature > 0))
        {
            var sampled = SampleRows(logits, rows, device);
            var isSampled = torch.tensor(rows.Select(r => r.Temperature > 0).ToArray(), device: device);
            chosen = torch.where(isSampled, sampled, chosen);
        }

        var chosenLogprobs = logprobs.gather(1, chosen.unsqueeze(1)).squeeze(1);
        int maxTop = rows.Max(r => r.TopLogprobs);
        long[] topIds = [];
        float[] topValues = [];
        if (maxTop > 0)
        {
            var (values, indices) = logprobs.topk(maxTop, dim: 1);
            topIds = indices.cpu().data<long>().ToArray();
            topValues = values.cpu().data<float>().ToArray();
        }

        long[] ids = chosen.cpu().data<long>().ToArray();
        float[] lp = chosenLogprobs.cpu().data<float>().ToArray();
        var result = new SampledToken[count];
        for (int i = 0; i < count; i++)
        {
            (int, float)[]? top = null;
            if (rows[i].TopLogprobs > 0)
            {
                top = new (int, float)[rows[i].TopLogprobs];
                for (int j = 0; j < top.Length; j++) top[j] = ((int)topIds[i * maxTop + j], topValues[i * maxTop + j]);
            }
            result[i] = new SampledToken((int)ids[i], lp[i], top);
        }
        return result;
    }

    /// <summary>
    /// The repetition penalty and banned tokens, on a copy of the logits; rows without either (the
    /// common case) cost nothing. Each such row is a few small indexed operations on its own ids.
    /// </summary>
    private static Tensor Penalize(Tensor logits, IReadOnlyList<RowSampling> rows, Device device)
    {
        if (!rows.Any(r => r.Penalized || r.HasBanned)) return logits;
        long vocab = logits.shape[1];
        var result = logits.clone();
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            if (!r.Penalized && !r.HasBanned) continue;
            var row = result[i];
            if (r.Penalized)
            {
                var ids = torch.tensor(r.Seen!.Where(t => t >= 0 && t < vocab).Distinct().Select(t => (long)t).ToArray(), device: device);
                var values = row.index_select(0, ids);
                float penalty = (float)r.RepetitionPenalty;
                row.index_copy_(0, ids, torch.where(values > 0, values / penalty, values * penalty));
            }
            if (r.HasBanned)
            {
                var ids = torch.tensor(r.Banned!.Where(t => t >= 0 && t < vocab).Distinct().Select(t => (long)t).ToArray(), device: device);
                row.index_fill_(0, ids, double.NegativeInfinity);
            }
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
        var temperature = torch.tensor(rows.Select(r => (float)(r.Temperature > 0 ? r.Temperature : 1.0)).ToArray(), device: device).unsqueeze(1);
        var uniform = torch.tensor(rows.Select(r => (float)r.Uniform).ToArray(), device: device).unsqueeze(1);
        var scaled = logits / temperature;
        if (rows.Any(r => r.Temperature > 0 && r.MinP > 0))
        {
            // min_p: drop tokens less likely than min_p times the most likely one (which always stays).
            var all = scaled.softmax(-1);
            var minP = torch.tensor(rows.Select(r => (float)r.MinP).ToArray(), device: device).unsqueeze(1);
            scaled = scaled.masked_fill(all < minP * all.max(-1, keepdim: true).values, double.NegativeInfinity);
        }

        bool filter = rows.Any(r => r.Temperature > 0 && ((r.TopK > 0 && r.TopK < vocab) || r.TopP < 1));
        if (!filter)
        {
            var cdf = scaled.softmax(-1).cumsum(-1);
            var index = (cdf < uniform * cdf.narrow(1, vocab - 1, 1)).sum(-1);
            return index.clamp_max(vocab - 1);
        }

        var (sorted, order) = scaled.sort(-1, descending: true);
        var rank = torch.arange(vocab, device: device).unsqueeze(0);
        var topK = torch.tensor(rows.Select(r => (long)(r.TopK > 0 ? Math.Min(r.TopK, vocab) : vocab)).ToArray(), device: device).unsqueeze(1);
        sorted = sorted.masked_fill(rank >= topK, double.NegativeInfinity);
        var probs = sorted.softmax(-1);
        var topP = torch.tensor(rows.Select(r => (float)r.TopP).ToArray(), device: device).unsqueeze(1);
        // Keep a token while the mass before it is below top_p; the most likely token always stays.
        var before = probs.cumsum(-1) - probs;
        probs = probs.masked_fill((before >= topP).logical_and(rank > 0), 0.0);
        var sortedCdf = probs.cumsum(-1);
        var position = (sortedCdf < uniform * sortedCdf.narrow(1, vocab - 1, 1)).sum(-1).clamp_max(vocab - 1);
        return order.gather(1, position.unsqueeze(1)).squeeze(1);
    }
}
