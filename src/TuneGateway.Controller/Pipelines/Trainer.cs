using System.Diagnostics;
using System.Text;
using System.Text.Json;
using TuneGateway.Training;

namespace TuneGateway.Controller.Pipelines;

/// <summary>Trains an adapter; the controller does not care where.</summary>
public interface ITrainer
{
    Task<TrainingReport> TrainAsync(TrainingRequest request, CancellationToken cancellationToken);
}

/// <summary>A failed training run, with the trainer's own words.</summary>
public sealed class TrainingFailedException(string message) : Exception(message);

/// <summary>
/// Runs <c>tunegw train</c> as a separate process, so that training has its own memory and its
/// own thread budget (<see cref="LoraTrainingOptions.Threads"/>) and cannot starve the serving
/// threads of the process that schedules it; a crash of the trainer is a failed step, nothing more.
/// </summary>
public sealed class ProcessTrainer(string fileName, IReadOnlyList<string> prefixArguments) : ITrainer
{
    /// <summary>The executable running now (dotnet + tunegw.dll, or the tunegw apphost).</summary>
    public static ProcessTrainer ForCurrentProcess()
    {
        string process = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot tell which executable runs this process.");
        string? entry = System.Reflection.Assembly.GetEntryAssembly()?.Location;
        return Path.GetFileNameWithoutExtension(process) == "dotnet" && entry is not null
            ? new ProcessTrainer(process, [entry])
            : new ProcessTrainer(process, []);
    }

    public async Task<TrainingReport> TrainAsync(TrainingRequest request, CancellationToken cancellationToken)
    {
        // One request file, not a list of flags: the trainer reads every setting from it, and it stays beside the output as the run's record.
        string requestPath = TrainingRequest.PathFor(request.OutputDirectory);
        request.Save(requestPath);
        // No --overwrite: each run trains into its own new directory, and one that already holds an adapter is a failed step, not something to replace.
        var args = new List<string>(prefixArguments) { "train", "--request", requestPath };

        var start = new ProcessStartInfo(fileName) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new TrainingFailedException($"Could not start {fileName}.");
        var log = new StringBuilder();
        var stderr = PumpAsync(process.StandardError, log);
        var stdout = PumpAsync(process.StandardOutput, log);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        await Task.WhenAll(stderr, stdout).ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            string tail = string.Join('\n', log.ToString().Split('\n').TakeLast(5));
            throw new TrainingFailedException($"tunegw train exited with code {process.ExitCode}: {tail.Trim()}");
        }
        string reportPath = Path.Combine(request.OutputDirectory, "training_report.json");
        return JsonSerializer.Deserialize<TrainingReport>(await File.ReadAllTextAsync(reportPath, cancellationToken).ConfigureAwait(false), LoraTrainer.ReportJson)
            ?? throw new TrainingFailedException($"'{reportPath}' is empty.");
    }

    private static async Task PumpAsync(StreamReader reader, StringBuilder log)
    {
        while (await reader.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            lock (log)
            {
                log.AppendLine(line);
                if (log.Length > 64_000) log.Remove(0, log.Length - 32_000);
            }
        }
    }

}
