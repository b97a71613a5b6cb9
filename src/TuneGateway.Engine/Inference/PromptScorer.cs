using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// A prompt chunk's scores: for each scored row, the log-probability of the prompt token that
/// follows it and the most likely alternatives, under the raw model distribution (as the sampler
/// reports generated tokens).
/// </summary>
public sealed record PromptScores(float[] Logprobs, (int TokenId, float Logprob)[][] Top);

/// <summary>Prompt log-probabilities (vLLM's <c>prompt_logprobs</c>, OpenAI's <c>echo</c> with <c>logprobs</c>) from a step's logits.</summary>
internal static class PromptScorer
{
    /// <summary>
    /// The logits rows (see <see cref="ForwardBatch.LogitRows"/>) of the sampled chunks, and of
    /// each scored chunk its first row and count.
    /// </summary>
    public static (long[] SampleRows, List<(int Chunk, long FirstRow)> Scored) SplitRows(IReadOnlyList<SequenceChunk> chunks)
    {
        var sampleRows = new List<long>();
        var scored = new List<(int, long)>();
        long row = 0;
        for (int i = 0; i < chunks.Count; i++)
        {
            if (chunks[i].ScoreTargets.Length > 0)
            {
                scored.Add((i, row));
                row += chunks[i].ScoreTargets.Length;
            }
            if (chunks[i].WantLogits) sampleRows.Add(row++);
        }
        return (sampleRows.ToArray(), scored);
    }

    /// <summary>One log_softmax, gather and top-k over all scored rows of the step, then split per chunk.</summary>
    public static List<PromptScores> Score(Tensor logits, IReadOnlyList<SequenceChunk> chunks, List<(int Chunk, long FirstRow)> scored)
    {
        var rows = scored.SelectMany(s => Enumerable.Range(0, chunks[s.Chunk].ScoreTargets.Length).Select(j => s.FirstRow + j)).ToArray();
        var targets = scored.SelectMany(s => chunks[s.Chunk].ScoreTargets.ToArray()).Select(t => (long)t).ToArray();
        var device = logits.device;
        var logprobs = logits.index_select(0, torch.tensor(rows, device: device)).log_softmax(-1);
        float[] chosen = logprobs.gather(1, torch.tensor(targets, device: device).unsqueeze(1)).squeeze(1).cpu().data<float>().ToArray();
        var top = Sampler.TopAlternatives(logprobs, scored.SelectMany(s => Enumerable.Repeat(chunks[s.Chunk].ScoreTop, chunks[s.Chunk].ScoreTargets.Length)).ToArray());

        var result = new List<PromptScores>(scored.Count);
        int at = 0;
        foreach (var (chunk, _) in scored)
        {
            int count = chunks[chunk].ScoreTargets.Length;
            result.Add(new PromptScores(chosen[at..(at + count)], top[at..(at + count)]));
            at += count;
        }
        return result;
    }
}
