using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// The logits processors of one step, in vLLM's order: logit bias, then the penalties (repetition
/// over prompt and output, frequency and presence over the output), then the mask of tokens a row
/// may not pick. Each is a fixed number of [rows, vocab] tensor operations over the whole batch,
/// built from dense per-step tensors; rows that do not use a processor get its neutral value
/// (bias 0, penalty 1 or 0, nothing masked), and a processor no row uses costs nothing.
/// </summary>
internal static class LogitsProcessor
{
    public static Tensor Apply(Tensor logits, IReadOnlyList<RowSampling> rows)
    {
        var device = logits.device;
        long vocab = logits.shape[1];
        if (rows.Any(r => r.HasLogitBias)) logits = logits + LogitBias(rows, vocab, device);

        bool repetition = rows.Any(r => r.HasRepetitionPenalty), output = rows.Any(r => r.HasOutputPenalty);
        if (repetition || output)
        {
            var counts = TokenCounts.Build(rows, vocab, device);
            if (repetition)
            {
                var penalty = Sampler.RowColumn(rows, r => r.HasRepetitionPenalty ? r.RepetitionPenalty : 1, device);
                var penalized = torch.where(logits > 0, logits / penalty, logits * penalty);
                logits = torch.where(counts.Seen, penalized, logits);
            }
            if (output)
            {
                var frequency = Sampler.RowColumn(rows, r => r.HasOutputPenalty ? r.FrequencyPenalty : 0, device);
                var presence = Sampler.RowColumn(rows, r => r.HasOutputPenalty ? r.PresencePenalty : 0, device);
                logits = logits - frequency * counts.Output - presence * (counts.Output > 0).to(logits.dtype);
            }
        }

        // The one place where tokens are forbidden outright. A per-row allowed-token mask (constrained
        // decoding) joins TokenMask.Blocked as one more bool [rows, vocab] term.
        if (TokenMask.Blocked(rows, vocab, device) is { } blocked) logits = logits.masked_fill(blocked, double.NegativeInfinity);
        return logits;
    }

    /// <summary>[rows, vocab]: each row's bias at its token ids, 0 elsewhere (one scatter into the flattened tensor).</summary>
    private static Tensor LogitBias(IReadOnlyList<RowSampling> rows, long vocab, Device device)
    {
        var index = new List<long>();
        var values = new List<float>();
        for (int i = 0; i < rows.Count; i++)
        {
            foreach (var (token, bias) in rows[i].LogitBias ?? EmptyBias)
            {
                if (token < 0 || token >= vocab) continue;
                index.Add(i * vocab + token);
                values.Add(bias);
            }
        }
        var dense = torch.zeros(rows.Count * vocab, device: device);
        dense.index_add_(0, torch.tensor(index.ToArray(), device: device), torch.tensor(values.ToArray(), device: device), 1);
        return dense.view(rows.Count, vocab);
    }

    private static readonly Dictionary<int, float> EmptyBias = [];
}

/// <summary>
/// Per-row token occurrences as dense tensors, from one padded [rows, longest] id tensor and two
/// scatter-adds (padding and out-of-range ids land in an extra column that is cut off).
/// <see cref="Seen"/>: in the prompt or the output; <see cref="Output"/>: occurrences in the output.
/// </summary>
internal sealed record TokenCounts(Tensor Seen, Tensor Output)
{
    public static TokenCounts Build(IReadOnlyList<RowSampling> rows, long vocab, Device device)
    {
        int width = Math.Max(1, rows.Max(r => r.HasRepetitionPenalty || r.HasOutputPenalty ? r.Tokens!.Count : 0));
        var ids = new long[rows.Count * width];
        var isOutput = new float[ids.Length];
        Array.Fill(ids, vocab);
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            if (!r.HasRepetitionPenalty && !r.HasOutputPenalty) continue;
            var tokens = r.Tokens!;
            for (int j = 0; j < tokens.Count; j++)
            {
                int token = tokens[j];
                ids[i * width + j] = token >= 0 && token < vocab ? token : vocab;
                isOutput[i * width + j] = j >= r.PromptLength ? 1 : 0;
            }
        }
        var index = torch.tensor(ids, device: device).view(rows.Count, width);
        var occurrences = torch.zeros(rows.Count, vocab + 1, device: device).scatter_add_(1, index, torch.ones(rows.Count, width, device: device));
        var output = torch.zeros(rows.Count, vocab + 1, device: device).scatter_add_(1, index, torch.tensor(isOutput, device: device).view(rows.Count, width));
        return new TokenCounts(occurrences.narrow(1, 0, vocab) > 0, output.narrow(1, 0, vocab));
    }
}

/// <summary>Which tokens each row may not pick this step, as one bool [rows, vocab] tensor (null: none anywhere).</summary>
internal static class TokenMask
{
    public static Tensor? Blocked(IReadOnlyList<RowSampling> rows, long vocab, Device device)
    {
        if (!rows.Any(r => r.HasBanned)) return null;
        var index = new List<long>();
        for (int i = 0; i < rows.Count; i++)
        {
            foreach (int token in rows[i].Banned ?? [])
                if (token >= 0 && token < vocab) index.Add(i * vocab + token);
        }
        var blocked = torch.zeros(rows.Count * vocab, dtype: ScalarType.Bool, device: device);
        blocked.index_fill_(0, torch.tensor(index.ToArray(), device: device), true);
        return blocked.view(rows.Count, vocab);
    }
}
