using TuneGateway.Cli;

return await TunegwCli.RunAsync(args, Console.Out, Console.Error);
