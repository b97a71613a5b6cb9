using System.CommandLine;
using TuneGateway.Cli.Commands;

namespace TuneGateway.Cli;

/// <summary>
/// The <c>tunegw</c> command tree and how it runs: Program.cs calls it with the console,
/// tests with their own writers and environment, so that a command's output and exit code can be
/// checked without a child process.
/// </summary>
public static class TunegwCli
{
    /// <summary>The root command. <paramref name="environment"/> resolves the <c>TUNEGW_*</c> fallbacks of the operator commands.</summary>
    public static RootCommand CreateRoot(Func<string, string?>? environment = null)
    {
        var root = new RootCommand("tunegw: serve Hugging Face LLMs with hot-swappable LoRA adapters, behind an OpenAI-compatible gateway.")
        {
            ServeCommand.Create(),
            WorkerCommand.Create(),
            GatewayCommand.Create(),
            ControllerCommand.Create(),
            DemoCommand.Create(),
            GenerateCommand.Create(),
            TrainCommand.Create(),
            BenchCommand.Create(),
        };
        foreach (var admin in new AdminCommands(environment ?? Environment.GetEnvironmentVariable).Create()) root.Subcommands.Add(admin);
        return root;
    }

    /// <summary>Parses and runs <paramref name="args"/>; returns a <see cref="CliExitCode"/>.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, Func<string, string?>? environment = null,
        CancellationToken cancellationToken = default)
    {
        var parse = CreateRoot(environment).Parse(args);
        if (parse.Errors.Count > 0)
        {
            // System.CommandLine would answer 1, which scripts could not tell from a server's refusal.
            foreach (var parseError in parse.Errors) await error.WriteLineAsync($"error: {parseError.Message}");
            await error.WriteLineAsync($"Run '{string.Join(' ', CommandPath(parse).Prepend("tunegw"))} --help' for usage.");
            return (int)CliExitCode.Usage;
        }
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, Output = output, Error = error }, cancellationToken);
        }
        catch (Exception ex) when (CliErrors.IsUserError(ex))
        {
            await error.WriteLineAsync($"error: {ex.Message}");
            return (int)CliExitCode.Usage;
        }
        catch (OperationCanceledException)
        {
            return (int)CliExitCode.Cancelled;
        }
    }

    private static IEnumerable<string> CommandPath(ParseResult parse)
    {
        var names = new Stack<string>();
        for (var result = parse.CommandResult; result.Parent is System.CommandLine.Parsing.CommandResult parent; result = parent)
            names.Push(result.Command.Name);
        return names;
    }
}
