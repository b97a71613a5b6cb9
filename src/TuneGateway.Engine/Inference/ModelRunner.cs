using TorchSharp;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// A model with its KV cache: runs forward passes over chunks of sequences held in cache slots.
/// Not thread-safe: one caller (the scheduler's loop) drives it.
/// </summary>
public sealed class ModelRunner : IDisposable
{
    public ModelRunner(CausalLanguageModel model, int slots, int maxLength)
    {
        if (maxLength > model.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(maxLength), $"The context length {maxLength} exceeds the model's {model.MaxPositions} positions.");
        Model = model;
        Cache = new KvCache(model.Config, slots, maxLength, model.Dtype, model.Device);
    }

    public CausalLanguageModel Model { get; }
    public KvCache Cache { get; }
    public int MaxLength => Cache.MaxLength;

    /// <summary>
    /// Float32 logits [chunks wanting logits, vocab] on the model's device; the caller disposes
    /// them. Chunks with an <see cref="SequenceChunk.Adapter"/> index use that adapter of
    /// <paramref name="adapters"/>.
    /// </summary>
    public Tensor Forward(IReadOnlyList<SequenceChunk> chunks, LoraWorkingSet? adapters = null)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var batch = ForwardBatch.Build(chunks, MaxLength, Model.Device);
        IProjectionDelta? delta = null;
        if (adapters is not null)
        {
            var rowAdapter = batch.RowChunk.Select(c => chunks[c].Adapter).ToArray();
            delta = adapters.ForRows(rowAdapter, Model.Dtype, Model.Device);
        }
        else if (chunks.Any(c => c.Adapter >= 0))
        {
            throw new ArgumentException("A chunk names an adapter but no working set was given.", nameof(chunks));
        }
        return Model.Forward(batch.TokenIds, batch.Positions, batch.SequenceLengths, new CachedAttentionBackend(batch, Cache), delta, batch.LogitRows).MoveToOuterDisposeScope();
    }

    /// <summary>One forward pass and one sampled token per chunk that wants logits.</summary>
    public SampledToken[] Step(IReadOnlyList<SequenceChunk> chunks, IReadOnlyList<RowSampling> sampling, LoraWorkingSet? adapters = null,
        List<PromptScores>? scores = null) =>
        Step(chunks, () => sampling, adapters, scores);

    /// <summary>
    /// One forward pass, then the rows' sampling settings (asked for only after the forward, so that
    /// work they wait on, such as constrained rows' masks, overlaps it), then one token per row that
    /// samples. Chunks with <see cref="SequenceChunk.ScoreTargets"/> also get their prompt scores,
    /// added to <paramref name="scores"/> in chunk order.
    /// </summary>
    public SampledToken[] Step(IReadOnlyList<SequenceChunk> chunks, Func<IReadOnlyList<RowSampling>> sampling, LoraWorkingSet? adapters = null,
        List<PromptScores>? scores = null)
    {
        using var logits = Forward(chunks, adapters);
        var rows = sampling();
        using var noGrad = torch.no_grad();
        if (!chunks.Any(c => c.ScoreTargets.Length > 0)) return Sampler.Sample(logits, rows);

        using var scope = torch.NewDisposeScope();
        var (sampleRows, scored) = PromptScorer.SplitRows(chunks);
        (scores ?? []).AddRange(PromptScorer.Score(logits, chunks, scored));
        return sampleRows.Length == 0 ? [] : Sampler.Sample(logits.index_select(0, torch.tensor(sampleRows, device: logits.device)), rows);
    }

    public void Dispose() => Cache.Dispose();
}
