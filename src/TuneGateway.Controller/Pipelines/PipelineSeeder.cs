using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Controller.Pipelines;

/// <summary>Pipelines from configuration to write at start.</summary>
public sealed record PipelineSeed(IReadOnlyList<PipelineDefinition> Pipelines);

/// <summary>
/// Writes configured pipelines to the store at start when the stored definition differs (or there
/// is none), auditing each write. Edits made through the API stand until the file changes them.
/// </summary>
public sealed class PipelineSeeder(PipelineSeed seed, LifecycleManager lifecycle, ILogger<PipelineSeeder> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var pipeline in seed.Pipelines)
        {
            var definition = pipeline.ToJson();
            var stored = await lifecycle.Pipelines.GetAsync(pipeline.Adapter, cancellationToken).ConfigureAwait(false);
            if (stored is not null && JsonElement.DeepEquals(stored.Definition, definition)) continue;
            var record = await lifecycle.PutPipelineAsync(pipeline.Adapter, definition, "config", "from the configuration file", cancellationToken).ConfigureAwait(false);
            logger.LogInformation("Pipeline {Adapter}: revision {Revision} from the configuration file", pipeline.Adapter, record.Revision);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
