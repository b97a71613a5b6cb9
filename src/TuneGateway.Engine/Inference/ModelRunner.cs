using TorchSharp;
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

    /// <summary>Float32 logits [chunks wanting logits, vocab] on the model's device; the caller disposes them.</summary>
    public Tensor Forward(IReadOnlyList<SequenceChunk> chunks, IProjectionDelta? delta = null)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var batch = ForwardBatch.Build(chunks, Model.Config, MaxLength, Model.Device);
        return Model.Forward(batch, Cache, delta).MoveToOuterDisposeScope();
    }

    /// <summary>One forward pass and one sampled token per chunk that wants logits.</summary>
    public SampledToken[] Step(IReadOnlyList<SequenceChunk> chunks, IReadOnlyList<RowSampling> sampling, IProjectionDelta? delta = null)
    {
        using var logits = Forward(chunks, delta);
        using var noGrad = torch.no_grad();
        return Sampler.Sample(logits, sampling);
    }

    public void Dispose() => Cache.Dispose();
}
