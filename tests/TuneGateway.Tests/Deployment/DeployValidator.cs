using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace TuneGateway.Tests.Deployment;

/// <summary>
/// Runs deploy/validate/validate.js (Node.js): installs its pinned npm packages with `npm ci` the
/// first time (into deploy/validate/node_modules, reused while package-lock.json is unchanged)
/// and returns the validator's exit code and output.
/// </summary>
internal static class DeployValidator
{
    private const string StampFile = ".tunegw-package-lock.sha256";
    private static readonly TimeSpan s_installTimeout = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan s_runTimeout = TimeSpan.FromMinutes(2);
    private static readonly SemaphoreSlim s_installGate = new(1, 1);
    private static bool s_installed;

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string ValidatorDir => Path.Combine(RepoRoot, "deploy", "validate");

    /// <summary>Validates the files under <paramref name="root"/> (default: the repository).</summary>
    public static async Task<ProcessResult> RunAsync(string? root = null, string? context = null)
    {
        await EnsureInstalledAsync();
        var args = new List<string> { Path.Combine(ValidatorDir, "validate.js") };
        if (root is not null) args.AddRange(["--root", root]);
        if (context is not null) args.AddRange(["--context", context]);
        return await ProcessRunner.RunAsync("node", args, ValidatorDir, s_runTimeout);
    }

    private static async Task EnsureInstalledAsync()
    {
        await s_installGate.WaitAsync();
        try
        {
            if (s_installed) return;
            string lockHash = Convert.ToHexString(SHA256.HashData(
                await File.ReadAllBytesAsync(Path.Combine(ValidatorDir, "package-lock.json"))));
            string stamp = Path.Combine(ValidatorDir, "node_modules", StampFile);

            // Another test process may be installing too: one at a time, machine-wide.
            using var machineLock = await AcquireFileLockAsync(Path.Combine(Path.GetTempPath(),
                "tunegw-npm-ci-" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(ValidatorDir)))[..16] + ".lock"));
            if (!File.Exists(stamp) || (await File.ReadAllTextAsync(stamp)).Trim() != lockHash)
            {
                var result = await ProcessRunner.RunAsync("npm",
                    ["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                    ValidatorDir, s_installTimeout);
                if (result.ExitCode != 0)
                {
                    throw new InvalidOperationException(
                        $"`npm ci` in deploy/validate failed (exit {result.ExitCode}):\n{result.Output}");
                }
                await File.WriteAllTextAsync(stamp, lockHash);
            }
            s_installed = true;
        }
        finally
        {
            s_installGate.Release();
        }
    }

    private static async Task<FileStream> AcquireFileLockAsync(string path)
    {
        var deadline = DateTime.UtcNow + s_installTimeout;
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None,
                    1, FileOptions.DeleteOnClose);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(500);
            }
        }
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TuneGateway.sln"))) return dir.FullName;
        }
        throw new DirectoryNotFoundException("TuneGateway.sln not found above " + AppContext.BaseDirectory);
    }
}

internal sealed record ProcessResult(int ExitCode, string Output);

internal static class ProcessRunner
{
    /// <summary>
    /// Runs a program to completion and returns its exit code with stdout and stderr merged. A
    /// missing program or a run past <paramref name="timeout"/> throws with what was printed.
    /// </summary>
    public static async Task<ProcessResult> RunAsync(string program, IEnumerable<string> args, string workingDirectory,
        TimeSpan timeout, IDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["NO_COLOR"] = "1";
        psi.Environment["npm_config_update_notifier"] = "false";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) psi.Environment[key] = value;

        var output = new StringBuilder();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException(
                $"cannot run `{program}` ({ex.Message}); the deployment tests need Node.js and npm " +
                "(Debian: apt-get install nodejs npm)", ex);
        }
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"`{program} {string.Join(' ', psi.ArgumentList)}` did not finish within {timeout}:\n{output}");
        }
        process.WaitForExit(); // flushes the asynchronous output readers
        lock (output) return new ProcessResult(process.ExitCode, output.ToString());
    }
}
