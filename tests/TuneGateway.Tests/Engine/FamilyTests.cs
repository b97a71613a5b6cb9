using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Tokenization;
using TuneGateway.Training;
using TuneGateway.Tests.Training;
using static TorchSharp.torch;

namespace TuneGateway.Tests.Engine;

/// <summary>
/// The families beyond parity: training on each, both MoE checkpoint layouts, the serving and
/// training attention backends agreeing (windows included), and what is refused, by name.
/// </summary>
[Collection(TorchRandomState.Collection)]
public class FamilyTests
{
    public static TheoryData<string> Families => FamilyParityTests.Families;

    [Theory]
    [MemberData(nameof(Families))]
    public void AFewTrainingStepsLowerTheLossAndSaveAnAdapterThatServes(string family)
    {
        string dir = Path.Combine(Fixtures.Models, family);
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        var tokenizer = HfTokenizer.FromDirectory(dir);
        using var output = new TempDirectory();
        var data = TrainingData.FromExamples(TrainingTests.ShoutExamples(32), tokenizer, 128);
        var options = new LoraTrainingOptions { Rank = 4, Alpha = 8, LearningRate = 1e-2, Epochs = 3, BatchSize = 8, ValidationSplit = 0, Patience = 0, Seed = 1 };
        var report = LoraTrainer.Train(model, data, options, output.Path);

        double first = report.Steps.Take(2).Average(s => s.Loss), last = report.Steps.TakeLast(2).Average(s => s.Loss);
        Assert.True(last < first * 0.8, $"{family}: training loss should fall: first steps {first:F3}, last steps {last:F3}");

        // The saved PEFT adapter loads through the serving path and gives the training path's logits.
        TrainingTests.AssertServedMatchesTrained(model, tokenizer, output.Path, options, $"{family}: served vs trained logits");
    }

    /// <summary>
    /// Decoding token by token through the cache (the serving backend) gives the logits that the
    /// whole sequence gives at once (the training backend), over a sequence longer than the
    /// sliding window, so windowed layers must drop the same keys in both.
    /// </summary>
    [Theory]
    [MemberData(nameof(Families))]
    public void ServingAndTrainingBackendsAgreePastTheWindow(string family)
    {
        string dir = Path.Combine(Fixtures.Models, family);
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        var random = new Random(7);
        int length = (model.Config.SlidingWindow ?? 24) + 12;
        var sequence = Enumerable.Range(0, length).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray();
        int prompt = 5;

        using var noGrad = torch.no_grad();
        using var ids = torch.tensor(sequence.Select(i => (long)i).ToArray()).unsqueeze(0);
        using var whole = model.ForwardSequences(ids);                                       // [1, T, V]
        using var runner = new ModelRunner(model, 2, Math.Min(length + 1, model.MaxPositions));
        var blocks = runner.ReserveSequence();
        using (var first = runner.Forward([new SequenceChunk(blocks, 0, sequence[..prompt])]))
            ParityTests.AssertClose(whole[0, prompt - 1].data<float>().ToArray(), first[0].data<float>().ToArray(), $"{family} prefill");
        for (int t = prompt; t < length; t++)
        {
            using var step = runner.Forward([new SequenceChunk(blocks, t, new[] { sequence[t] })]);
            var expected = whole[0, t].data<float>().ToArray();
            var actual = step[0].data<float>().ToArray();
            float worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
            // The backends multiply in different orders (GQA as query rows vs repeated keys);
            // Gemma 2's ×8 embeddings and capped scores show that rounding at ~3e-4.
            Assert.True(worst <= 1e-3f, $"{family} decode at position {t}: max |diff| {worst:G4}");
        }
    }

    [Theory]
    [InlineData("mixtral-tiny")]
    [InlineData("qwen3-moe-tiny")]
    public void PerExpertAndFused3DExpertCheckpointsGiveTheSameLogits(string family)
    {
        string dir = Path.Combine(Fixtures.Models, family);
        using var fused = new TempDirectory();
        File.Copy(Path.Combine(dir, "config.json"), Path.Combine(fused.Path, "config.json"));
        WriteFusedExperts(Path.Combine(dir, "model.safetensors"), Path.Combine(fused.Path, "model.safetensors"));

        using var perExpertModel = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        using var fusedModel = CausalLanguageModel.Load(fused.Path, torch.CPU, ScalarType.Float32);
        int[] prompt = [5, 17, 99, 3, 250, 41, 8, 77];
        using var a = new ModelRunner(perExpertModel, 1, 64);
        using var b = new ModelRunner(fusedModel, 1, 64);
        using var expected = a.Forward([new SequenceChunk(a.ReserveSequence(), 0, prompt)]);
        using var actual = b.Forward([new SequenceChunk(b.ReserveSequence(), 0, prompt)]);
        ParityTests.AssertClose(expected[0].data<float>().ToArray(), actual[0].data<float>().ToArray(), $"{family} fused experts");
    }

    /// <summary>
    /// Rewrites a per-expert checkpoint in transformers 5's layout: mlp.gate.weight and
    /// mlp.experts.gate_up_proj [E, 2I, H] / down_proj [E, H, I] (Mixtral's block_sparse_moe
    /// renamed mlp, its w1/w3/w2 as gate/up/down).
    /// </summary>
    private static void WriteFusedExperts(string source, string target)
    {
        using var file = SafeTensorsFile.Open(source);
        var tensors = new Dictionary<string, Tensor>();
        var experts = new SortedDictionary<string, SortedDictionary<int, Dictionary<string, Tensor>>>(StringComparer.Ordinal);
        foreach (var name in file.Entries.Keys)
        {
            var t = file.Load(name, ScalarType.Float32, torch.CPU);
            var m = System.Text.RegularExpressions.Regex.Match(name, @"^(model\.layers\.\d+)\.(?:block_sparse_moe|mlp)\.(?:experts\.(\d+)\.(\w+)\.weight|(gate)\.weight)$");
            if (!m.Success) { tensors[name] = t; continue; }
            if (m.Groups[4].Success) { tensors[$"{m.Groups[1].Value}.mlp.gate.weight"] = t; continue; }
            var layer = experts.TryGetValue(m.Groups[1].Value, out var l) ? l : experts[m.Groups[1].Value] = [];
            var expert = layer.TryGetValue(int.Parse(m.Groups[2].Value), out var e) ? e : layer[int.Parse(m.Groups[2].Value)] = [];
            string part = m.Groups[3].Value switch { "w1" => "gate_proj", "w3" => "up_proj", "w2" => "down_proj", var other => other };
            expert[part] = t;
        }
        foreach (var (layer, byExpert) in experts)
        {
            tensors[$"{layer}.mlp.experts.gate_up_proj"] = torch.stack(byExpert.Values.Select(e => torch.cat([e["gate_proj"], e["up_proj"]], 0)).ToArray(), 0);
            tensors[$"{layer}.mlp.experts.down_proj"] = torch.stack(byExpert.Values.Select(e => e["down_proj"]).ToArray(), 0);
        }
        SafeTensorsWriter.Write(target, tensors);
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    public void AnAdapterOnExpertsIsRefusedWithTheReason()
    {
        string dir = Path.Combine(Fixtures.Models, "qwen3-moe-tiny");
        using var model = CausalLanguageModel.Load(dir, torch.CPU, ScalarType.Float32);
        using var adapterDir = new TempDirectory();
        string module = "model.layers.0.mlp.experts.0.gate_proj";
        PeftWriter.Write(adapterDir.Path, 4, 8, ["gate_proj"],
            [new PeftModuleWeights(module, torch.zeros(4, 64), torch.zeros(32, 4))], "qwen3-moe-tiny", false);
        var error = Assert.Throws<AdapterLoadException>(() => LoraAdapter.Load(adapterDir.Path, model, 64, torch.CPU));
        Assert.Contains("mixture-of-experts", error.Message);
        Assert.Contains(module, error.Message);
    }

    [Theory]
    [InlineData("""{"architectures":["Qwen3ForCausalLM"],"rope_scaling":{"rope_type":"mrope","factor":2}}""", "rope_scaling.rope_type")]
    [InlineData("""{"architectures":["LlamaForCausalLM"],"partial_rotary_factor":0.5}""", "partial_rotary_factor")]
    [InlineData("""{"architectures":["Qwen3MoeForCausalLM"],"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":8,"shared_expert_intermediate_size":16}""", "shared_expert_intermediate_size")]
    [InlineData("""{"architectures":["Gemma3ForConditionalGeneration"]}""", "Gemma3ForCausalLM")]
    [InlineData("""{"architectures":["Gemma2ForCausalLM"],"hidden_activation":"gelu"}""", "hidden_activation")]
    [InlineData("""{"architectures":["Phi3ForCausalLM"],"partial_rotary_factor":0.5,"original_max_position_embeddings":64,"rope_scaling":{"type":"longrope","short_factor":[1,1],"long_factor":[1,1]}}""", "short_factor")]
    [InlineData("""{"architectures":["Gemma3ForCausalLM"],"sliding_window":8,"layer_types":["sliding_attention"]}""", "layer_types")]
    public void ConfigsThatWouldChangeTheMathAreRefusedNamingTheKey(string overrides, string key)
    {
        using var doc = Merge("""{"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":64,"head_dim":16}""", overrides);
        var error = Assert.Throws<ModelLoadException>(() => ModelConfig.Parse(doc.RootElement, "config.json"));
        Assert.Contains(key, error.Message);
    }

    [Fact]
    public void BothConfigFormsOfGemma3GiveTheSameLayers()
    {
        // Classic: rope_theta + rope_local_base_freq + sliding_window_pattern; transformers 5:
        // rope_parameters per layer type + layer_types.
        const string common = """{"hidden_size":32,"intermediate_size":64,"num_hidden_layers":6,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":64,"head_dim":16,"sliding_window":8,"query_pre_attn_scalar":16,"architectures":["Gemma3ForCausalLM"]}""";
        using var classic = Merge(common, """{"rope_theta":1000000,"rope_local_base_freq":10000,"rope_scaling":{"rope_type":"linear","factor":8},"sliding_window_pattern":3}""");
        using var v5 = Merge(common, """{"layer_types":["sliding_attention","sliding_attention","full_attention","sliding_attention","sliding_attention","full_attention"],"rope_parameters":{"full_attention":{"rope_type":"linear","factor":8,"rope_theta":1000000},"sliding_attention":{"rope_type":"default","rope_theta":10000}}}""");
        var a = ModelConfig.Parse(classic.RootElement, "classic");
        var b = ModelConfig.Parse(v5.RootElement, "v5");
        for (int i = 0; i < 6; i++)
        {
            Assert.Equal(a.WindowOf(i), b.WindowOf(i));
            Assert.Equal(a.RopeOf(i), b.RopeOf(i));
        }
        Assert.Equal(8, a.WindowOf(0));
        Assert.Null(a.WindowOf(2));
        Assert.Equal(new RopeParameters(1000000, RopeType.Linear, Factor: 8), a.RopeOf(2));
        Assert.Equal(new RopeParameters(10000, RopeType.Default), a.RopeOf(0));
        Assert.Equal(1 / Math.Sqrt(16), a.AttentionScale);
    }

    /// <summary>A config.json: <paramref name="baseJson"/> with the fields of <paramref name="overrides"/> set.</summary>
    private static JsonDocument Merge(string baseJson, string overrides)
    {
        var config = JsonNode.Parse(baseJson)!.AsObject();
        foreach (var (name, value) in JsonNode.Parse(overrides)!.AsObject()) config[name] = value?.DeepClone();
        return JsonDocument.Parse(config.ToJsonString());
    }
}
