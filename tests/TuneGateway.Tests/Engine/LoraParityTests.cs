using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Tests.Engine;

/// <summary>
/// PEFT parity for LoRA: each fixture adapter alone, all adapters and the base mixed row by row
/// in one batch, and merged weights, against the logits, greedy ids and log-probabilities that
/// transformers + PEFT computed.
/// </summary>
public class LoraParityTests
{
    public static TheoryData<string, string[]> Fixtures => new()
    {
        { "llama-tiny/base", ["shout", "reverse"] },
        { "models/mistral-f32", ["patterns", "regex"] },
    };

    private static (string Dir, string AdapterRoot, ReferenceFile Reference) Open(string relative)
    {
        string dir = Path.Combine(Engine.Fixtures.Root, relative);
        bool tiny = relative.StartsWith("llama-tiny", StringComparison.Ordinal);
        string adapters = tiny ? Engine.Fixtures.LlamaTinyAdapters : Path.Combine(dir, "adapters");
        string reference = tiny ? Path.Combine(dir, "..", "reference.json") : Path.Combine(dir, "reference.json");
        return (dir, adapters, Engine.Fixtures.LoadReference(reference));
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void BaseAndEveryAdapterMixedInOneBatchMatchPeft(string relative, string[] adapterNames)
    {
        var (dir, adapterRoot, reference) = Open(relative);
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        var adapters = adapterNames.Select(n => LoraAdapter.Load(Path.Combine(adapterRoot, n), model, 64, torch.CPU)).ToArray();
        using var workingSet = new LoraWorkingSet(adapters, model.LinearGroups.Count, torch.CPU);

        // Rows: every prompt for the base, then for each adapter, interleaved so neighbours differ.
        var variants = new[] { "base" }.Concat(adapterNames).ToArray();
        var rows = new List<(string Variant, int Adapter, ReferenceCase Case)>();
        int prompts = reference.Cases["base"].Count;
        for (int p = 0; p < prompts; p++)
            for (int v = 0; v < variants.Length; v++)
                rows.Add((variants[v], v - 1, reference.Cases[variants[v]][p]));

        using var runner = new ModelRunner(model, rows.Count, 512);
        var (logits, ids, logprobs) = GreedyMixed(runner, workingSet, rows.Select(r => (r.Case.PromptIds, r.Adapter)).ToArray(), 16);
        for (int i = 0; i < rows.Count; i++)
        {
            string what = $"{rows[i].Variant}, prompt {i / variants.Length}";
            ParityTests.AssertClose(rows[i].Case.LastLogits, logits[i], $"last logits ({what})");
            Assert.True(rows[i].Case.GreedyIds.SequenceEqual(ids[i]), $"greedy ids ({what}): expected [{string.Join(",", rows[i].Case.GreedyIds)}], got [{string.Join(",", ids[i])}]");
            ParityTests.AssertClose(rows[i].Case.GreedyLogprobs, logprobs[i], $"greedy logprobs ({what})");
        }
        foreach (var a in adapters) a.Dispose();
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void MergedWeightsGiveTheSameLogitsAsUnmerged(string relative, string[] adapterNames)
    {
        var (dir, adapterRoot, reference) = Open(relative);
        foreach (string name in adapterNames)
        {
            using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
            using var adapter = LoraAdapter.Load(Path.Combine(adapterRoot, name), model, 64, torch.CPU);
            LoraMerge.Apply(model, adapter);
            using var runner = new ModelRunner(model, 1, 512);
            using var logits = runner.Forward([new SequenceChunk(runner.ReserveSequence(), 0, reference.Cases["base"][1].PromptIds)]);
            ParityTests.AssertClose(reference.MergedLogits[$"{name}@merged_last_logits_prompt1"], logits[0].data<float>().ToArray(), $"merged {name}");
        }
    }

    [Fact]
    public void RanksPaddingIsReportedForLayerSelectiveAdapters()
    {
        var (dir, adapterRoot, _) = Open("models/mistral-f32");
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        using var patterns = LoraAdapter.Load(Path.Combine(adapterRoot, "patterns"), model, 64, torch.CPU);
        // layers 0 and 2 of 3; q_proj of layer 2 has rank 2 and down_proj rank 4 (rank_pattern).
        Assert.Equal(8 + 8 + 8, patterns.Columns[(int)LinearKind.Qkv]);
        Assert.Equal(4, patterns.Columns[(int)LinearKind.Down]);
        Assert.Equal(8, patterns.MaxRank);
        // Layer 1 is padded whole (24+8+16+4 columns); layer 2's q_proj is 6 short.
        Assert.Equal(24 + 8 + 16 + 4 + 6, patterns.PaddingColumns);
    }

    internal static (float[][] Logits, int[][] Ids, float[][] Logprobs) GreedyMixed(
        ModelRunner runner, LoraWorkingSet? set, (int[] Prompt, int Adapter)[] rows, int steps)
    {
        int n = rows.Length;
        var ids = rows.Select(_ => new List<int>()).ToArray();
        var logprobs = rows.Select(_ => new List<float>()).ToArray();
        var greedy = Enumerable.Repeat(new RowSampling(0, 0, 1, 0, 0), n).ToArray();
        float[][] first;
        var tables = rows.Select(_ => runner.ReserveSequence()).ToArray();
        using (var logits = runner.Forward(rows.Select((r, i) => new SequenceChunk(tables[i], 0, r.Prompt, Adapter: r.Adapter)).ToArray(), set))
        {
            first = Enumerable.Range(0, n).Select(i => logits[i].data<float>().ToArray()).ToArray();
            var tokens = Sampler.Sample(logits, greedy);
            for (int i = 0; i < n; i++) { ids[i].Add(tokens[i].TokenId); logprobs[i].Add(tokens[i].Logprob); }
        }
        for (int step = 1; step < steps; step++)
        {
            var chunks = Enumerable.Range(0, n)
                .Select(i => new SequenceChunk(tables[i], rows[i].Prompt.Length + step - 1, new[] { ids[i][^1] }, Adapter: rows[i].Adapter)).ToArray();
            var next = runner.Step(chunks, greedy, set);
            for (int i = 0; i < n; i++) { ids[i].Add(next[i].TokenId); logprobs[i].Add(next[i].Logprob); }
        }
        return (first, ids.Select(l => l.ToArray()).ToArray(), logprobs.Select(l => l.ToArray()).ToArray());
    }
}
