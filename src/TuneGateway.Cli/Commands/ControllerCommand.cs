using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Cli.Hosting;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw controller</c>: the retraining controller as its own process, over the shared Redis.</summary>
internal static class ControllerCommand
{
    public static Command Create()
    {
        var redis = new Option<string>("--redis") { Description = "StackExchange.Redis connection string of the shared store (registry, aliases, pipelines, traffic).", Required = true };
        var model = new Option<string?>("--model") { Description = "The base model adapters are trained on (the workers' --model). Default: the bundled tiny model." };
        var artifacts = new Option<string>("--artifacts") { Description = "The adapter artifact directory the workers read (a shared volume in a cluster).", Required = true };
        var gateway = new Option<string>("--gateway") { Description = "The gateway's URL; evaluation requests go through it like real traffic.", Required = true };
        var gatewayKey = new Option<string?>("--gateway-key") { Description = "API key for the gateway (inference role; also TUNEGW_GATEWAY_KEY)." };
        var config = new Option<string?>("--config") { Description = "JSON file of pipeline definitions ({\"pipelines\": [...]}) written to the store at start." };
        var device = new Option<string>("--training-device") { Description = "Device of training runs: auto, cpu, cuda[:N].", DefaultValueFactory = _ => "auto" };
        var noSemantic = new Option<bool>("--no-semantic-drift") { Description = "Do not load a CPU copy of the base model for semantic drift." };
        var otlp = new Option<string?>("--otlp-endpoint") { Description = "OTLP collector for traces, metrics and logs (or OTEL_EXPORTER_OTLP_ENDPOINT)." };
        var logLevel = new Option<string>("--log-level") { Description = "Trace, Debug, Information, Warning, Error.", DefaultValueFactory = _ => "Information" };
        var command = new Command("controller", "Run the retraining controller: scheduled and triggered pipelines (curate, train, evaluate, canary), canary and drift monitors. Replicas share the work through Redis leases.");
        foreach (var option in new Option[] { redis, model, artifacts, gateway, gatewayKey, config, device, noSemantic, otlp, logLevel }) command.Options.Add(option);
        command.SetAction(async (parse, cancellationToken) =>
        {
            string level = parse.GetValue(logLevel)!;
            if (!Enum.TryParse<LogLevel>(level, ignoreCase: true, out var minimum))
                throw new ArgumentException($"--log-level '{level}': expected Trace, Debug, Information, Warning or Error.");
            string gatewayUrl = parse.GetValue(gateway)!;
            if (!Uri.TryCreate(gatewayUrl, UriKind.Absolute, out var parsed) || parsed.Scheme is not ("http" or "https"))
                throw new ArgumentException($"--gateway '{gatewayUrl}' is not an http(s) URL.");
            string baseModel = parse.GetValue(model) ?? BundledModel.Directory;
            if (!File.Exists(Path.Combine(baseModel, "config.json")))
                throw new FileNotFoundException($"--model '{baseModel}' has no config.json.");
            using var host = ControllerHost.Create(new ControllerHostSettings
            {
                RedisConnectionString = parse.GetValue(redis)!,
                GatewayUrl = gatewayUrl,
                GatewayKey = parse.GetValue(gatewayKey) ?? Environment.GetEnvironmentVariable("TUNEGW_GATEWAY_KEY"),
                Options = new ControllerOptions
                {
                    BaseModelDirectory = baseModel,
                    ArtifactDirectory = parse.GetValue(artifacts)!,
                    TrainingDevice = parse.GetValue(device)!,
                    SemanticDrift = !parse.GetValue(noSemantic),
                },
                Pipelines = parse.GetValue(config) is { } file ? PipelineConfigFile.Read(file) : [],
                OtlpEndpoint = parse.GetValue(otlp),
                ConfigureLogging = logging => logging.SetMinimumLevel(minimum),
            });
            await host.RunAsync(cancellationToken);
            return 0;
        });
        return command;
    }
}
