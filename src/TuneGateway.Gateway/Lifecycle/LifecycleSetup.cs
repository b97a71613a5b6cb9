using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Gateway.Lifecycle;

/// <summary>
/// The adapter lifecycle of a gateway host: the registry, aliases, pipelines, approvals and job
/// history (Redis when a connection string is given, else the embedded store under the data
/// directory) and the operator and MLOps API over them. The retraining controller is no part of it:
/// serve adds it to its host (TuneGateway.Cli), and what the API needs of the controller's and the
/// engine's code comes in through <see cref="PipelineDefinitions"/>, <see cref="AdapterFormat"/>
/// and <see cref="IPipelineSchedule"/>.
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
    /// <summary>The base model a version registered through the API records when the request names none (serve: its worker's model directory; null: "unknown").</summary>
    public string? BaseModel { get; init; }
    /// <summary>Checks the pipeline definitions <c>PUT /admin/pipelines/{name}</c> stores (null: that endpoint answers 501).</summary>
    public IPipelineDefinitions? PipelineDefinitions { get; init; }
    /// <summary>Checks that a directory registered as a version is an adapter (null: registration answers 501).</summary>
    public IAdapterFormat? AdapterFormat { get; init; }
}

/// <summary>
/// A pipeline definition's rules (its schema, the cron syntax, the training hyperparameters) are the
/// retraining controller's, whose assembly links Quartz, training and TorchSharp: whoever composes
/// the host hands them in (the CLI, for serve and gateway alike).
/// </summary>
public interface IPipelineDefinitions
{
    /// <summary>
    /// The definition, checked, in the form the store keeps (defaults filled in); else an
    /// <see cref="ArgumentException"/> whose message starts with the offending field.
    /// </summary>
    System.Text.Json.JsonElement Normalize(System.Text.Json.JsonElement definition);
}

/// <summary>The retraining controller's schedule, registered in the host's services when the controller runs in this process.</summary>
public interface IPipelineSchedule
{
    /// <summary>When the adapter's pipeline runs next on its schedule (null: it has none, or it is paused).</summary>
    Task<DateTimeOffset?> NextRunAsync(string adapter, CancellationToken cancellationToken);
    /// <summary>Picks up requested runs and changed pipelines now rather than at the next periodic sync.</summary>
    Task SyncAsync(CancellationToken cancellationToken);
}

/// <summary>What an adapter directory must hold to be served; the engine knows, the gateway does not reference it.</summary>
public interface IAdapterFormat
{
    /// <returns>Null when <paramref name="directory"/> is an adapter this build can serve, else why not (for the client).</returns>
    string? Problem(string directory);
}

internal static class LifecycleSetup
{
    /// <returns>Where the lifecycle state lives, for the startup log.</returns>
    public static string AddServerLifecycle(this IServiceCollection services, LifecycleSettings settings)
    {
        services.AddLifecycleStores(settings.RedisConnectionString, settings.DataDirectory, settings.KeyPrefix);
        services.AddLifecycleManagement();
        // The gateway routes on the lifecycle's aliases (what a promotion sets is what requests see),
        // and its alias API edits them through LifecycleManager (AddLifecycleManagement: IAliasEditor).
        if (settings.ArtifactDirectory is { } artifacts) services.TryAddSingleton(new ArtifactStore(artifacts));
        services.AddSingleton(settings);
        return settings.RedisConnectionString is not null ? "Redis" : $"the embedded store under {Path.GetFullPath(settings.DataDirectory)}";
    }
}
