using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Tests.Engine;

/// <summary>
/// Token-for-token parity with Hugging Face transformers on the reference fixtures: last-position
/// logits and log-probabilities within 2e-4, greedy ids identical; with the KV cache, and with
/// every prompt of a fixture running in one batch.
/// </summary>
public class ParityTests
{
    private const float Tolerance = 2e-4f;

    public static TheoryData<string> ModelDirectories => new()
    {
        "llama-tiny/base",
        "models/qwen2-tied-bf16",
        "models/llama3-rope-sharded-f16",
        "models/mistral-f32",
    };

    private static (string Dir, ReferenceFile Reference) Open(string relative)
    {
        string dir = Path.Combine(Fixtures.Root, relative);
        string referencePath = File.Exists(Path.Combine(dir, "reference.json"))
            ? Path.Combine(dir, "reference.json")
            : Path.Combine(dir, "..", "reference.json");
        return (dir, Fixtures.LoadReference(referencePath));
    }

    [Theory]
    [MemberData(nameof(ModelDirectories))]
    public void EachPromptAloneMatchesTransformers(string relative)
    {
        var (dir, reference) = Open(relative);
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        foreach (var expected in reference.Cases["base"])
        {
            using var runner = new ModelRunner(model, sequences: 1, maxLength: 512);
            var (logits, ids, logprobs) = GreedyBatch(runner, [expected.PromptIds], 16);
            AssertClose(expected.LastLogits, logits[0], "last logits");
            Assert.Equal(expected.GreedyIds, ids[0]);
            AssertClose(expected.GreedyLogprobs, logprobs[0], "greedy logprobs");
        }
    }

    [Theory]
    [MemberData(nameof(ModelDirectories))]
    public void AllPromptsBatchedTogetherMatchTransformers(string relative)
    {
        var (dir, reference) = Open(relative);
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        var cases = reference.Cases["base"];
        using var runner = new ModelRunner(model, sequences: cases.Count, maxLength: 512);
        var (logits, ids, logprobs) = GreedyBatch(runner, cases.Select(c => c.PromptIds).ToArray(), 16);
        for (int i = 0; i < cases.Count; i++)
        {
            AssertClose(cases[i].LastLogits, logits[i], $"last logits of prompt {i}");
            Assert.Equal(cases[i].GreedyIds, ids[i]);
            AssertClose(cases[i].GreedyLogprobs, logprobs[i], $"greedy logprobs of prompt {i}");
        }
    }

    [Fact]
    public void DecodingWithTheCacheMatchesRecomputingTheWholeSequence()
    {
        var (dir, reference) = Open("llama-tiny/base");
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        var expected = reference.Cases["base"][1];
        var sequence = expected.PromptIds.Concat(expected.GreedyIds.Take(10)).ToArray();

        using var cached = new ModelRunner(model, sequences: 1, maxLength: 128);
        var (_, ids, _) = GreedyBatch(cached, [expected.PromptIds], 11);

        using var fresh = new ModelRunner(model, sequences: 1, maxLength: 128);
        using var full = fresh.Forward([new SequenceChunk(fresh.ReserveSequence(), 0, sequence)]);
        int recomputed = (int)full.argmax(-1).item<long>();
        Assert.Equal(ids[0][10], recomputed);
    }

    /// <summary>Prefills every prompt in one step, then decodes all rows together.</summary>
    internal static (float[][] LastLogits, int[][] Ids, float[][] Logprobs) GreedyBatch(ModelRunner runner, int[][] prompts, int steps)
    {
        int n = prompts.Length;
        var ids = prompts.Select(_ => new List<int>()).ToArray();
        var logprobs = prompts.Select(_ => new List<float>()).ToArray();
        var greedy = Enumerable.Repeat(new RowSampling(0, 0, 1, 0, 0), n).ToArray();

        var tables = prompts.Select(_ => runner.ReserveSequence()).ToArray();
        var chunks = prompts.Select((p, i) => new SequenceChunk(tables[i], 0, p)).ToArray();
        float[][] lastLogits;
        using (var logits = runner.Forward(chunks))
        {
            lastLogits = Enumerable.Range(0, n).Select(i => logits[i].data<float>().ToArray()).ToArray();
            var first = Sampler.Sample(logits, greedy);
            for (int i = 0; i < n; i++) { ids[i].Add(first[i].TokenId); logprobs[i].Add(first[i].Logprob); }
        }
        for (int step = 1; step < steps; step++)
        {
            var decode = Enumerable.Range(0, n)
                .Select(i => new SequenceChunk(tables[i], prompts[i].Length + step - 1, new[] { ids[i][^1] })).ToArray();
            var next = runner.Step(decode, greedy);
            for (int i = 0; i < n; i++) { ids[i].Add(next[i].TokenId); logprobs[i].Add(next[i].Logprob); }
        }
        return (lastLogits, ids.Select(l => l.ToArray()).ToArray(), logprobs.Select(l => l.ToArray()).ToArray());
    }

    internal static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            float diff = Math.Abs(expected[i] - actual[i]);
            if (diff > worst) { worst = diff; at = i; }
        }
        Assert.True(worst <= Tolerance, $"{what}: max |diff| {worst:G4} at {at} (expected {expected[Math.Max(at, 0)]}, got {actual[Math.Max(at, 0)]}) exceeds {Tolerance}");
    }
}
