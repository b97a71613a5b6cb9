using System.Text.Json;
using TuneGateway.Controller.Jobs;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Gateway.Lifecycle;

namespace TuneGateway.Cli.Hosting;

/// <summary>The controller's rules for pipeline definitions, handed to the gateway's operator API by serve and gateway alike.</summary>
public sealed class ControllerPipelineDefinitions : IPipelineDefinitions
{
    public static ControllerPipelineDefinitions Instance { get; } = new();

    public JsonElement Normalize(JsonElement definition) => PipelineDefinition.FromJson(definition).ToJson();
}

/// <summary>The in-process controller's Quartz schedule, as the operator API asks about it.</summary>
internal sealed class ControllerPipelineSchedule(ControllerScheduler scheduler) : IPipelineSchedule
{
    public Task<DateTimeOffset?> NextRunAsync(string adapter, CancellationToken cancellationToken) => scheduler.NextFireAsync(adapter, cancellationToken);

    public Task SyncAsync(CancellationToken cancellationToken) => scheduler.SyncAsync(false, cancellationToken);
}
