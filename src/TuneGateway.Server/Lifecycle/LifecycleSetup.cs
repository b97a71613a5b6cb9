using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Controller;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Server.Lifecycle;

/// <summary>
/// The adapter lifecycle of a gateway host: the registry, aliases, pipelines, approvals and job
/// history (Redis when a connection string is given, else the embedded store under the data
/// directory), the operator and MLOps API over them, and optionally the retraining controller in
/// the same process (serve's single-machine mode).
/// </summary>
public sealed record LifecycleSettings
{
    /// <summary>StackExchange.Redis connection string; shares the traffic log's connection.</summary>
    public string? RedisConnectionString { get; init; }
    /// <summary>Directory of the embedded lifecycle store when there is no Redis.</summary>
    public required string DataDirectory { get; init; }
    /// <summary>The adapter artifact directory (versions under <c>{dir}/{adapter}/{version}</c>); needed to register versions.</summary>
    public string? ArtifactDirectory { get; init; }
    /// <summary>Key prefix in Redis.</summary>
    public string KeyPrefix { get; init; } = "tunegw";
    /// <summary>Run the retraining controller (Quartz jobs, pipelines, monitors) in this process.</summary>
    public ControllerHosting? Controller { get; init; }
}

/// <summary>The retraining controller hosted inside a serve or gateway process.</summary>
public sealed record ControllerHosting
{
    public required ControllerOptions Options { get; init; }
    /// <summary>Pipelines from a configuration file, written to the store at start when they differ (null: none).</summary>
    public IReadOnlyList<PipelineDefinition> Pipelines { get; init; } = [];
    /// <summary>The trainer (default: <c>tunegw train</c> as a child process of this executable).</summary>
    public ITrainer? Trainer { get; init; }
}

internal static class LifecycleSetup
{
    /// <returns>Where the lifecycle state lives, for the startup log.</returns>
    public static string AddServerLifecycle(this IServiceCollection services, LifecycleSettings settings, Func<string?> internalKey)
    {
        services.AddLifecycleStores(settings.RedisConnectionString, settings.DataDirectory, settings.KeyPrefix);
        services.AddLifecycleManagement();
        // The gateway routes on the lifecycle's aliases (what a promotion sets is what requests see),
        // and its alias API edits them through LifecycleManager (AddLifecycleManagement: IAliasEditor).
        if (settings.ArtifactDirectory is { } artifacts) services.TryAddSingleton(new ArtifactStore(artifacts));

        if (settings.Controller is { } controller)
        {
            services.AddRetrainingController(controller.Options,
                sp => new LoopbackCompletionClient(sp.GetRequiredService<IServer>(), sp.GetRequiredService<IHttpClientFactory>(), internalKey(), controller.Options.EvaluationTimeout), controller.Trainer);
            services.AddSingleton(new PipelineSeed(controller.Pipelines));
            services.AddHostedService<PipelineSeeder>();
        }
        return settings.RedisConnectionString is not null ? "Redis" : $"the embedded store under {Path.GetFullPath(settings.DataDirectory)}";
    }

    /// <summary>Fails at start, with the reason, when the controller has nothing to learn from.</summary>
    public static void Validate(IServiceProvider services, LifecycleSettings settings)
    {
        if (settings.Controller is not null && services.GetService<ITrafficReader>() is null)
            throw new InvalidOperationException("The retraining controller learns from the traffic log, which is off: drop --no-traffic-log (or run the controller elsewhere).");
    }
}

/// <summary>Greedy evaluation completions sent to this very host's public API (serve's own gateway).</summary>
internal sealed class LoopbackCompletionClient(IServer server, IHttpClientFactory clients, string? apiKey, TimeSpan timeout) : ICompletionClient
{
    private GatewayCompletionClient? _client;

    public Task<string> CompleteAsync(string model, string prompt, int maxTokens, CancellationToken cancellationToken) =>
        (_client ??= Create()).CompleteAsync(model, prompt, maxTokens, cancellationToken);

    private GatewayCompletionClient Create()
    {
        string address = server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("The server is not listening yet.");
        var uri = new UriBuilder(address.Replace("://+", "://127.0.0.1", StringComparison.Ordinal).Replace("://*", "://127.0.0.1", StringComparison.Ordinal)
            .Replace("://0.0.0.0", "://127.0.0.1", StringComparison.Ordinal).Replace("://[::]", "://127.0.0.1", StringComparison.Ordinal)) { Path = "/" }.Uri;
        var http = clients.CreateClient(nameof(LoopbackCompletionClient));
        http.BaseAddress = uri;
        http.Timeout = timeout;
        return new GatewayCompletionClient(http, apiKey);
    }
}

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
            if (stored is not null && System.Text.Json.JsonElement.DeepEquals(stored.Definition, definition)) continue;
            var record = await lifecycle.PutPipelineAsync(pipeline.Adapter, definition, "config", "from the configuration file", cancellationToken).ConfigureAwait(false);
            logger.LogInformation("Pipeline {Adapter}: revision {Revision} from the configuration file", pipeline.Adapter, record.Revision);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
