using System.Diagnostics;
using TorchSharp;
using TuneGateway.Engine.Inference;
using static TorchSharp.torch;

namespace TuneGateway.Cli.Bench;

/// <summary>Settings of the sampler micro-benchmark.</summary>
internal sealed record SamplerBenchOptions
{
    public required Device Device { get; init; }
    public IReadOnlyList<int> Batches { get; init; } = [1, 8, 32];
    /// <summary>Qwen2's vocabulary: the largest of the supported families.</summary>
    public int Vocab { get; init; } = 151936;
    /// <summary>Prompt and output tokens each row's penalties count over.</summary>
    public int PromptTokens { get; init; } = 512;
    public int OutputTokens { get; init; } = 128;
    public int LogitBiasEntries { get; init; } = 16;
    public int Steps { get; init; } = 20;
}

/// <summary>
/// The time <see cref="Sampler.Sample"/> takes for one step of random logits, without the model:
/// plain sampling (temperature) against every logits processor and filter at once (logit bias,
/// repetition, frequency and presence penalties, a banned token, min-p, top-k, top-p).
/// </summary>
internal static class SamplerBench
{
    public static void Run(SamplerBenchOptions options, TextWriter output)
    {
        output.WriteLine($"sampler: vocabulary {options.Vocab}, penalties over {options.PromptTokens} prompt + {options.OutputTokens} output tokens, " +
                         $"{options.LogitBiasEntries} logit_bias entries; median of {options.Steps} steps, device {options.Device}");
        var table = new BenchTable(output, "batch", "plain ms/step", "penalties + bias ms/step", "filters ms/step", "all ms/step");
        foreach (int batch in options.Batches)
        {
            var random = new Random(batch);
            using var logits = torch.randn(batch, options.Vocab, device: options.Device);
            var plain = Enumerable.Range(0, batch).Select(_ => new RowSampling(1, 0, 1, 0, random.NextDouble())).ToArray();
            var all = Enumerable.Range(0, batch).Select(_ => Everything(options, random)).ToArray();
            // The processors alone (sampling at temperature 0.8, no filters), the filters alone, and both.
            var processors = all.Select(r => r with { TopK = 0, TopP = 1, MinP = 0 }).ToArray();
            var filters = all.Select(r => new RowSampling(r.Temperature, r.TopK, r.TopP, 0, r.Uniform) { MinP = r.MinP }).ToArray();
            table.Row(batch, MedianMs(logits, plain, options.Steps), MedianMs(logits, processors, options.Steps),
                MedianMs(logits, filters, options.Steps), MedianMs(logits, all, options.Steps));
        }
        output.WriteLine();
    }

    private static RowSampling Everything(SamplerBenchOptions options, Random random)
    {
        var tokens = Enumerable.Range(0, options.PromptTokens + options.OutputTokens).Select(_ => random.Next(options.Vocab)).ToArray();
        var bias = Enumerable.Range(0, options.LogitBiasEntries).ToDictionary(_ => random.Next(options.Vocab), _ => (float)(random.NextDouble() * 20 - 10));
        return new RowSampling(0.8, 50, 0.95, 0, random.NextDouble())
        {
            MinP = 0.05,
            RepetitionPenalty = 1.1,
            FrequencyPenalty = 0.5,
            PresencePenalty = 0.5,
            Tokens = tokens,
            PromptLength = options.PromptTokens,
            LogitBias = bias,
            Banned = [2],
        };
    }

    private static double MedianMs(Tensor logits, RowSampling[] rows, int steps)
    {
        Sampler.Sample(logits, rows);
        var times = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            long start = Stopwatch.GetTimestamp();
            Sampler.Sample(logits, rows);
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        return times[steps / 2];
    }
}
