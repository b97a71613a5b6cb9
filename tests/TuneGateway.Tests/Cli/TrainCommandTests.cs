using System.Security.Cryptography;
using TuneGateway.Cli;
using TuneGateway.Tests.Engine;

namespace TuneGateway.Tests.Cli;

/// <summary><c>tunegw train</c> through the CLI's command tree: it never replaces an adapter unasked, and writes checkpoints only when asked.</summary>
public sealed class TrainCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Data()
    {
        string path = Path.Combine(_dir.Path, "train.jsonl");
        File.WriteAllLines(path, Training.TrainingTests.ShoutExamples(16).Select(e => System.Text.Json.JsonSerializer.Serialize(new { prompt = e.Prompt, completion = e.Completion })));
        return path;
    }

    private static async Task<(CliExitCode Code, string Err)> TrainAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = await TunegwCli.RunAsync(["train", "--model", Fixtures.LlamaTiny, "--device", "cpu", "--epochs", "2", "--batch-size", "8", "--rank", "4", "--threads", "1", .. args],
            output, error, _ => null);
        return ((CliExitCode)code, error.ToString());
    }

    private static Dictionary<string, string> Snapshot(string directory) =>
        Directory.GetFiles(directory, "*", SearchOption.AllDirectories).ToDictionary(f => Path.GetRelativePath(directory, f), f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    [Fact]
    public async Task AnExistingAdapterIsReplacedOnlyWithOverwrite()
    {
        string data = Data();
        string served = Path.Combine(_dir.Path, "served");
        Directory.CreateDirectory(served);
        foreach (string source in Directory.GetFiles(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"))) File.Copy(source, Path.Combine(served, Path.GetFileName(source)));
        var before = Snapshot(served);

        var refused = await TrainAsync("--data", data, "--out", served);
        Assert.Equal(CliExitCode.Usage, refused.Code);
        Assert.Contains("already holds an adapter", refused.Err);
        Assert.Contains("--overwrite", refused.Err);
        Assert.Equal(before, Snapshot(served));

        var replaced = await TrainAsync("--data", data, "--out", served, "--overwrite");
        Assert.True(replaced.Code == CliExitCode.Ok, replaced.Err);
        var after = Snapshot(served);
        Assert.NotEqual(before["adapter_model.safetensors"], after["adapter_model.safetensors"]);
        Assert.Contains("training_report.json", after.Keys);

        // A path that is a file is refused too, and left alone.
        string file = Path.Combine(_dir.Path, "a-file");
        await File.WriteAllTextAsync(file, "keep me");
        Assert.Equal(CliExitCode.Usage, (await TrainAsync("--data", data, "--out", file)).Code);
        Assert.Equal("keep me", await File.ReadAllTextAsync(file));
    }

    [Fact]
    public async Task CheckpointsAreWrittenOnlyWhenAskedFor()
    {
        string data = Data();
        string plain = Path.Combine(_dir.Path, "plain");
        var run = await TrainAsync("--data", data, "--out", plain);
        Assert.True(run.Code == CliExitCode.Ok, run.Err);
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors", "training_report.json"], Directory.GetFileSystemEntries(plain).Select(Path.GetFileName).Order());

        string checkpointed = Path.Combine(_dir.Path, "checkpointed");
        var withCheckpoints = await TrainAsync("--data", data, "--out", checkpointed, "--checkpoint-every", "1", "--keep-best");
        Assert.True(withCheckpoints.Code == CliExitCode.Ok, withCheckpoints.Err);
        var kept = Directory.GetDirectories(Path.Combine(checkpointed, "checkpoints"));
        Assert.Single(kept);
        Assert.True(File.Exists(Path.Combine(kept[0], "optimizer.bin")));

        var usage = await TrainAsync("--data", data, "--out", Path.Combine(_dir.Path, "never"), "--keep-best");
        Assert.Equal(CliExitCode.Usage, usage.Code);
        Assert.Contains("--checkpoint-every", usage.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir.Path, "never")));
    }

    [Fact]
    public async Task ARequestFileTrainsExactlyWhatTheSameFlagsTrain()
    {
        // The controller's way in (one request file) and an operator's (flags) must mean the same run: same seed, same bytes.
        string data = Data();
        string byFlags = Path.Combine(_dir.Path, "by-flags");
        var flags = await TrainAsync("--data", data, "--out", byFlags, "--lr", "0.003", "--seed", "5", "--targets", "q_proj,v_proj");
        Assert.True(flags.Code == CliExitCode.Ok, flags.Err);

        string byRequest = Path.Combine(_dir.Path, "by-request");
        var request = new TuneGateway.Training.TrainingRequest(Fixtures.LlamaTiny, data, null, byRequest, new TuneGateway.Training.LoraTrainingOptions
        {
            Rank = 4, Epochs = 2, BatchSize = 8, Threads = 1, LearningRate = 0.003, Seed = 5, Targets = ["q_proj", "v_proj"], Dropout = 0.05,
        }, "cpu");
        string file = TuneGateway.Training.TrainingRequest.PathFor(byRequest);
        request.Save(file);
        var fromFile = await TrainRequestAsync("--request", file);
        Assert.True(fromFile.Code == CliExitCode.Ok, fromFile.Err);
        Assert.Equal(Snapshot(byFlags)["adapter_model.safetensors"], Snapshot(byRequest)["adapter_model.safetensors"]);
        var json = TuneGateway.Training.TrainingRequest.Json;
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(request, json), System.Text.Json.JsonSerializer.Serialize(TuneGateway.Training.TrainingRequest.Load(file), json));
    }

    [Fact]
    public async Task ABadRequestFileIsRefusedBeforeAnythingIsWritten()
    {
        string output = Path.Combine(_dir.Path, "never");
        var valid = new TuneGateway.Training.TrainingRequest(Fixtures.LlamaTiny, Data(), null, output, new TuneGateway.Training.LoraTrainingOptions(), "cpu");
        string file = Path.Combine(_dir.Path, "request.json");
        valid.Save(file);

        // With another training flag: which of the two would win is not obvious, so neither does.
        var mixed = await TrainRequestAsync("--request", file, "--epochs", "9");
        Assert.Equal(CliExitCode.Usage, mixed.Code);
        Assert.Contains("--epochs", mixed.Err);

        var node = System.Text.Json.Nodes.JsonNode.Parse(await File.ReadAllTextAsync(file))!;
        node["options"]!["learning_rte"] = 0.1;
        await File.WriteAllTextAsync(file, node.ToJsonString());
        var misspelt = await TrainRequestAsync("--request", file);
        Assert.Equal(CliExitCode.Usage, misspelt.Code);
        Assert.Contains("learning_rte", misspelt.Err);

        node["options"]!.AsObject().Remove("learning_rte");
        node["format"] = 2;
        await File.WriteAllTextAsync(file, node.ToJsonString());
        var newer = await TrainRequestAsync("--request", file);
        Assert.Equal(CliExitCode.Usage, newer.Code);
        Assert.Contains("format 2", newer.Err);
        Assert.False(Directory.Exists(output));
    }

    private static async Task<(CliExitCode Code, string Err)> TrainRequestAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = await TunegwCli.RunAsync(["train", .. args], output, error, _ => null);
        return ((CliExitCode)code, error.ToString());
    }
}
