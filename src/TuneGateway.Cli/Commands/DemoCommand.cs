using System.CommandLine;
using TuneGateway.Cli.Demo;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw demo</c>: the closed retraining loop, end to end, on the bundled model.</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var redis = new Option<string?>("--redis") { Description = "Run on Redis (connection string) instead of the embedded stores; the demo uses its own key prefix." };
        var workDir = new Option<string?>("--work-dir") { Description = "Keep data, artifacts and datasets here (default: a temporary directory, removed at the end)." };
        var seed = new Option<int>("--seed") { Description = "Seed of the simulated traffic; the same seed gives the same result line.", DefaultValueFactory = _ => 7 };
        var timeout = new Option<double>("--timeout-minutes") { Description = "Give up after this long.", DefaultValueFactory = _ => 12 };
        var verbose = new Option<bool>("--verbose") { Description = "Also print the server's and the controller's logs." };
        var command = new Command("demo", "Show the retraining loop end to end: drifted traffic and feedback, retraining, offline gate, canary, promotion; a bad candidate stopped. Ends with one JSON line.");
        foreach (var option in new Option[] { redis, workDir, seed, timeout, verbose }) command.Options.Add(option);
        command.SetAction(async (parse, cancellationToken) =>
        {
            double minutes = parse.GetValue(timeout);
            if (!(minutes > 0)) throw new ArgumentException("--timeout-minutes must be positive.");
            var demo = new ClosedLoopDemo(new DemoOptions
            {
                Redis = parse.GetValue(redis),
                WorkDirectory = parse.GetValue(workDir),
                Seed = parse.GetValue(seed),
                Timeout = TimeSpan.FromMinutes(minutes),
                Verbose = parse.GetValue(verbose),
            }, Console.Out);
            var (result, failure) = await demo.RunAsync(cancellationToken);
            if (failure is not null) Console.Error.WriteLine($"demo failed: {failure}");
            Console.Out.WriteLine($"finished in {result.Seconds:F1} s");
            Console.Out.WriteLine(DemoJson.Format(result));
            return failure is null ? 0 : 1;
        });
        return command;
    }
}
