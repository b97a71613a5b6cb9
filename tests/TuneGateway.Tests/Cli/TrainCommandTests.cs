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
}
