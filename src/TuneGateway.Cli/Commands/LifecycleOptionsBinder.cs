using System.CommandLine;
using TuneGateway.Cli.Hosting;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;

namespace TuneGateway.Cli.Commands;

/// <summary>
/// The adapter lifecycle options of <c>serve</c> and <c>gateway</c>. The store follows the traffic
/// log's: Redis with <c>--redis</c>, else the embedded store under the data directory.
/// </summary>
internal sealed class LifecycleOptionsBinder(bool canHostController)
{
    public Option<string?> Artifacts { get; } = new("--artifacts")
    {
        Description = "Adapter artifact directory: versions under DIR/NAME/VERSION, written by the retraining loop and registration, served as NAME@VERSION. Default (serve): DATA_DIR/artifacts.",
    };
    public Option<bool> Controller { get; } = new("--controller") { Description = "Also run the retraining controller (Quartz jobs, training, canaries) in this process." };
    public Option<string?> Pipelines { get; } = new("--pipelines") { Description = "JSON file of pipeline definitions written to the store at start (implies --controller)." };
    public Option<string> TrainingDevice { get; } = new("--training-device") { Description = "Device of training runs: auto, cpu, cuda[:N].", DefaultValueFactory = _ => "auto" };
    public Option<bool> NoSemanticDrift { get; } = new("--no-semantic-drift") { Description = "Do not load a CPU copy of the base model to embed prompts for semantic drift (large models)." };

    public void AddTo(Command command)
    {
        command.Options.Add(Artifacts);
        if (!canHostController) return;
        foreach (var option in new Option[] { Controller, Pipelines, TrainingDevice, NoSemanticDrift }) command.Options.Add(option);
    }

    /// <param name="traffic">The traffic settings: their Redis and data directory are the lifecycle's too.</param>
    /// <param name="defaultDataDirectory">The data directory when none is given (null: the lifecycle is off without --redis or --data-dir).</param>
    public LifecycleSettings? Bind(ParseResult parse, TrafficLogSettings traffic, string? defaultDataDirectory)
    {
        string? dataDirectory = traffic.DataDirectory ?? defaultDataDirectory;
        if (traffic.RedisConnectionString is null && dataDirectory is null) return null;
        dataDirectory ??= Path.Combine(Environment.CurrentDirectory, "data");
        return new LifecycleSettings
        {
            RedisConnectionString = traffic.RedisConnectionString,
            DataDirectory = dataDirectory, // the embedded store keeps its files under DATA_DIR/lifecycle
            ArtifactDirectory = parse.GetValue(Artifacts) ?? (canHostController ? Path.Combine(dataDirectory, "artifacts") : null),
            // tunegw links the controller and the engine even where it runs only a gateway: its operator
            // API checks pipeline definitions and adapters as serve's does.
            PipelineDefinitions = ControllerPipelineDefinitions.Instance,
            AdapterFormat = PeftAdapterFormat.Instance,
        };
    }

    /// <returns>The in-process controller --controller or --pipelines asks for (null: none, or no lifecycle to run on).</returns>
    public ControllerHosting? BindController(ParseResult parse, LifecycleSettings? lifecycle, string baseModelDirectory)
    {
        if (!canHostController || lifecycle is null) return null;
        string? pipelineFile = parse.GetValue(Pipelines);
        if (!parse.GetValue(Controller) && pipelineFile is null) return null;
        return new ControllerHosting
        {
            Options = new ControllerOptions
            {
                BaseModelDirectory = baseModelDirectory,
                ArtifactDirectory = lifecycle.ArtifactDirectory!, // serve's defaults under the data directory
                TrainingDevice = parse.GetValue(TrainingDevice)!,
                SemanticDrift = !parse.GetValue(NoSemanticDrift),
            },
            Pipelines = pipelineFile is null ? [] : PipelineConfigFile.Read(pipelineFile),
        };
    }
}
