using System.Text.Json;
using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Tokenization;
using TuneGateway.Tests.Engine;
using TuneGateway.Training;
using static TorchSharp.torch;

namespace TuneGateway.Tests.Training;

/// <summary>
/// LoRA training: the training forward matches transformers + PEFT, loss falls on a small task,
/// the result is a PEFT adapter the serving path reproduces exactly, and runs resume from
/// checkpoints and stop early.
/// </summary>
[Collection(TorchRandomState.Collection)]
public sealed class TrainingTests : IDisposable
{
    private readonly CausalLanguageModel _model = CausalLanguageModel.Load(Fixtures.LlamaTiny, torch.CPU, ScalarType.Float32);
    private readonly HfTokenizer _tokenizer = HfTokenizer.FromDirectory(Fixtures.LlamaTiny);
    private readonly ReferenceFile _reference = Fixtures.LoadReference(Path.Combine(Fixtures.Root, "llama-tiny", "reference.json"));

    public void Dispose() => _model.Dispose();

    private static readonly string[] Words = ["license", "software", "copy", "permission", "notice", "warranty", "holders", "source", "binary", "forms", "rights", "use"];

    /// <summary>"input: word\noutput:" → " WORD": the shout task, small enough to learn in seconds.</summary>
    internal static IEnumerable<TrainingExample> ShoutExamples(int count, int seed = 0)
    {
        var random = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            string word = Words[random.Next(Words.Length)];
            yield return new TrainingExample($"input: {word}\noutput:", " " + word.ToUpperInvariant());
        }
    }

    [Fact]
    public void TrainingForwardWithImportedFactorsMatchesPeft()
    {
        // The shout fixture (r=8, alpha=16, q_proj and v_proj) through the training path.
        var options = new LoraTrainingOptions { Rank = 8, Alpha = 16, Targets = ["q_proj", "v_proj"] };
        using var lora = new TrainableLora(_model, options) { Training = false };
        lora.Import(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        using var noGrad = torch.no_grad();
        foreach (var expected in _reference.Cases["shout"])
        {
            using var ids = torch.tensor(expected.PromptIds.Select(i => (long)i).ToArray()).unsqueeze(0);
            using var logits = _model.ForwardSequences(ids, lora);
            ParityTests.AssertClose(expected.LastLogits, logits[0, -1].data<float>().ToArray(), "training-path shout logits");
        }
    }

    [Fact]
    public void LossFallsAndTheAdapterServesWhatTrainingComputed()
    {
        using var dir = new TempDirectory();
        var data = TrainingData.FromExamples(ShoutExamples(64), _tokenizer, 128);
        var options = new LoraTrainingOptions { Rank = 8, Alpha = 16, LearningRate = 1e-2, Epochs = 4, BatchSize = 8, ValidationSplit = 0.125, Patience = 0, Seed = 1 };
        var report = LoraTrainer.Train(_model, data, options, dir.Path);

        Assert.Equal(4, report.EpochsRun);
        Assert.Equal(56, report.TrainExamples);
        Assert.Equal(8, report.ValidationExamples);
        Assert.Equal(data.Sha256, report.DataSha256);
        double first = report.Steps.Take(3).Average(s => s.Loss);
        double last = report.Steps.TakeLast(3).Average(s => s.Loss);
        Assert.True(last < first * 0.5, $"training loss should fall by half: first steps {first:F3}, last steps {last:F3}");
        Assert.True(report.Validation.Last().Loss < report.Validation.First().Loss);
        Assert.True(File.Exists(Path.Combine(dir.Path, "training_report.json")));
        // No checkpoints unless asked for.
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "checkpoints")));

        // The PEFT files load through the serving path and give the training path's logits.
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "adapter_config.json"))).RootElement;
        Assert.Equal("LORA", config.GetProperty("peft_type").GetString());
        Assert.Equal(8, config.GetProperty("r").GetInt32());
        AssertServedMatchesTrained(_model, _tokenizer, dir.Path, options, "served vs trained logits");
    }

    /// <summary>The adapter in <paramref name="adapterDirectory"/> loaded for serving gives the training path's logits.</summary>
    internal static void AssertServedMatchesTrained(CausalLanguageModel model, HfTokenizer tokenizer, string adapterDirectory, LoraTrainingOptions options, string what)
    {
        using var served = LoraAdapter.Load(adapterDirectory, model, 64, torch.CPU);
        using var set = new LoraWorkingSet([served], model.LinearGroups.Count, torch.CPU);
        using var trained = new TrainableLora(model, options) { Training = false };
        trained.Import(adapterDirectory);

        var prompt = tokenizer.Encode("input: warranty\noutput:", addSpecialTokens: true).ToArray();
        using var runner = new ModelRunner(model, 1, 64);
        using var servedLogits = runner.Forward([new SequenceChunk(runner.ReserveSequence(), 0, prompt, Adapter: 0)], set);
        using var noGrad = torch.no_grad();
        using var ids = torch.tensor(prompt.Select(i => (long)i).ToArray()).unsqueeze(0);
        using var trainedLogits = model.ForwardSequences(ids, trained);
        ParityTests.AssertClose(trainedLogits[0, -1].data<float>().ToArray(), servedLogits[0].data<float>().ToArray(), what);
    }

    [Fact]
    public void ResumingFromACheckpointContinuesTheSameRun()
    {
        var data = TrainingData.FromExamples(ShoutExamples(24), _tokenizer, 128);
        var options = new LoraTrainingOptions { Rank = 4, Alpha = 8, LearningRate = 2e-3, Epochs = 2, BatchSize = 4, ValidationSplit = 0, Patience = 0, Dropout = 0.1, Seed = 3, CheckpointEvery = 1 };
        using var full = new TempDirectory();
        LoraTrainer.Train(_model, data, options, full.Path);

        // The same run, killed after its first epoch's checkpoint, then resumed from it.
        using var interrupted = new TempDirectory();
        using var kill = new CancellationTokenSource();
        var killAfterEpochOne = new SynchronousProgress(p => { if (p.Epoch == 2) kill.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => { LoraTrainer.Train(_model, data, options, interrupted.Path, killAfterEpochOne, cancellationToken: kill.Token); });
        Assert.False(Directory.Exists(Path.Combine(interrupted.Path, "checkpoints", "epoch-2")));
        var resumed = LoraTrainer.Train(_model, data, options, interrupted.Path, resumeFrom: Path.Combine(interrupted.Path, "checkpoints", "epoch-1"));
        Assert.Equal(2, resumed.EpochsRun);
        Assert.Equal(2 * 6, resumed.Steps.Count);

        using var a = SafeTensorsFile.Open(Path.Combine(full.Path, "adapter_model.safetensors"));
        using var b = SafeTensorsFile.Open(Path.Combine(interrupted.Path, "adapter_model.safetensors"));
        foreach (string name in a.Entries.Keys)
        {
            using var x = a.Load(name, ScalarType.Float32, torch.CPU);
            using var y = b.Load(name, ScalarType.Float32, torch.CPU);
            Assert.True(x.allclose(y, rtol: 1e-4, atol: 1e-6), $"{name} differs between the full and the resumed run");
        }
    }

    [Fact]
    public void ValidationThatStopsImprovingEndsTheRunEarly()
    {
        // Validation asks for the opposite of what training teaches: it can only get worse.
        var train = ShoutExamples(32).ToList();
        var contradicting = train.Take(8).Select(e => e with { Completion = " " + e.Completion.Trim().ToLowerInvariant() + "!" });
        var data = TrainingData.FromExamples(train, _tokenizer, 128);
        var validation = TrainingData.FromExamples(contradicting, _tokenizer, 128);
        var options = new LoraTrainingOptions { Rank = 8, Alpha = 16, LearningRate = 1e-2, Epochs = 6, BatchSize = 8, Patience = 1, Seed = 5 };
        using var dir = new TempDirectory();
        var report = LoraTrainer.Train(_model, data, options, dir.Path, validationData: validation);
        Assert.StartsWith("early stop", report.Stopped);
        Assert.True(report.EpochsRun < 6);
        Assert.Equal(report.Validation.MinBy(v => v.Loss)!.Epoch, report.BestEpoch);
    }

    [Fact]
    public void CheckpointsAreWrittenEveryNEpochsAndKeepBestKeepsOnlyTheBest()
    {
        var data = TrainingData.FromExamples(ShoutExamples(16), _tokenizer, 128);
        var options = new LoraTrainingOptions { Rank = 4, Alpha = 8, LearningRate = 1e-2, Epochs = 4, BatchSize = 8, ValidationSplit = 0, Patience = 0, Seed = 2, CheckpointEvery = 2 };
        using var every = new TempDirectory();
        LoraTrainer.Train(_model, data, options, every.Path);
        Assert.Equal(["epoch-2", "epoch-4"], Directory.GetDirectories(Path.Combine(every.Path, "checkpoints")).Select(Path.GetFileName).Order());

        // Validation that only gets worse (see below): epoch 1 is the best, and its checkpoint the only one left.
        var train = ShoutExamples(32).ToList();
        var validation = TrainingData.FromExamples(train.Take(8).Select(e => e with { Completion = " " + e.Completion.Trim().ToLowerInvariant() + "!" }), _tokenizer, 128);
        var keepBest = new LoraTrainingOptions { Rank = 8, Alpha = 16, LearningRate = 1e-2, Epochs = 3, BatchSize = 8, Patience = 0, Seed = 5, CheckpointEvery = 1, KeepBestCheckpoint = true };
        using var best = new TempDirectory();
        var report = LoraTrainer.Train(_model, TrainingData.FromExamples(train, _tokenizer, 128), keepBest, best.Path, validationData: validation);
        Assert.Equal(1, report.BestEpoch);
        Assert.Equal(3, report.EpochsRun);
        Assert.Equal(["epoch-1"], Directory.GetDirectories(Path.Combine(best.Path, "checkpoints")).Select(Path.GetFileName));
        // The adapter written is the best epoch's, not the last one's.
        Assert.Equal(File.ReadAllBytes(Path.Combine(best.Path, "checkpoints", "epoch-1", "adapter_model.safetensors")),
            File.ReadAllBytes(Path.Combine(best.Path, "adapter_model.safetensors")));

        Assert.Throws<ArgumentException>(() => (options with { CheckpointEvery = 0, KeepBestCheckpoint = true }).Validate());
    }

    [Fact]
    public void ChatDataPutsTheLossOnTheAnswerOnly()
    {
        using var dir = new TempDirectory();
        string path = Path.Combine(dir.Path, "chat.jsonl");
        File.WriteAllLines(path,
        [
            """{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "HELLO"}]}""",
            """{"prompt": "input: copy\noutput:", "completion": " COPY"}""",
        ]);
        var template = TuneGateway.Engine.Chat.ChatTemplate.FromModelDirectory(Fixtures.LlamaTiny);
        var data = TrainingData.Load(path, _tokenizer, template, 128);
        var chat = data.Examples[0];
        string answer = _tokenizer.Decode(chat.Ids.Skip(chat.CompletionStart));
        Assert.Equal("HELLO<|im_end|>\n", answer);
        Assert.Equal("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", _tokenizer.Decode(chat.Ids.Take(chat.CompletionStart)));
        var plain = data.Examples[1];
        Assert.Equal(" COPY<|endoftext|>", _tokenizer.Decode(plain.Ids.Skip(plain.CompletionStart)));

        File.WriteAllText(path, """{"text": "no prompt"}""");
        var error = Assert.Throws<InvalidDataException>(() => { TrainingData.Load(path, _tokenizer, template, 128); });
        Assert.Contains("line 1", error.Message);
    }
}

/// <summary>An IProgress that reports on the caller's thread (Progress&lt;T&gt; would post to the thread pool).</summary>
internal sealed class SynchronousProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value) => report(value);
}

/// <summary>An adapter trained by tunegw on a GPU, loaded by HF PEFT as is: the engine serves PEFT's numbers.</summary>
public class TrainedAdapterInteropTests
{
    [Fact]
    public void TheEngineServesWhatPeftComputesForATunegwTrainedAdapter()
    {
        string dir = Path.Combine(Fixtures.Root, "tunegw-trained");
        var reference = Fixtures.LoadReference(Path.Combine(dir, "reference.json"));
        using var model = CausalLanguageModel.Load(Fixtures.LlamaTiny, torch.CPU, ScalarType.Float32);
        using var adapter = LoraAdapter.Load(dir, model, 64, torch.CPU);
        using var set = new LoraWorkingSet([adapter], model.LinearGroups.Count, torch.CPU);
        var cases = reference.Cases["trained"];
        using var runner = new ModelRunner(model, cases.Count, 64);
        var (logits, ids, logprobs) = LoraParityTests.GreedyMixed(runner, set, cases.Select(c => (c.PromptIds, 0)).ToArray(), 16);
        for (int i = 0; i < cases.Count; i++)
        {
            ParityTests.AssertClose(cases[i].LastLogits, logits[i], $"prompt {i} logits");
            Assert.Equal(cases[i].GreedyIds, ids[i]);
            ParityTests.AssertClose(cases[i].GreedyLogprobs, logprobs[i], $"prompt {i} logprobs");
        }
    }
}

/// <summary>
/// Training seeds and draws from libtorch's one global generator (initialisation, dropout), so
/// test classes that train run one at a time: two in parallel draw from each other's stream and
/// a seeded run stops being reproducible.
/// </summary>
[CollectionDefinition(Collection)]
public sealed class TorchRandomState
{
    public const string Collection = "torch global random state";
}
