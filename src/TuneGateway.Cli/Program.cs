using System.CommandLine;
using TuneGateway.Cli;
using TuneGateway.Cli.Commands;

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
foreach (var admin in AdminCommands.Create()) root.Subcommands.Add(admin);
try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (Exception ex) when (CliErrors.IsUserError(ex))
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    return 130;
}
