using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Controller;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway.Common;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Cli.Hosting;

/// <summary>What <c>tunegw controller</c> needs: the shared Redis, the base model, the artifact volume, and a gateway to evaluate through.</summary>
public sealed record ControllerHostSettings
{
    public required string RedisConnectionString { get; init; }
    public required ControllerOptions Options { get; init; }
    /// <summary>The gateway evaluation requests go to (its public URL).</summary>
    public required string GatewayUrl { get; init; }
    /// <summary>An API key with the inference role on that gateway (null: open mode).</summary>
    public string? GatewayKey { get; init; }
    public IReadOnlyList<PipelineDefinition> Pipelines { get; init; } = [];
    public string? OtlpEndpoint { get; init; }
    public Action<ILoggingBuilder>? ConfigureLogging { get; init; }
    public string KeyPrefix { get; init; } = "tunegw";
}

/// <summary>
/// The retraining controller as its own process (no HTTP port): Quartz jobs for every pipeline in
/// the shared store, the pipeline runner, canary and drift monitors. Several replicas may run:
/// each firing is claimed once and every run holds a fenced lease.
/// </summary>
public static class ControllerHost
{
    public static IHost Create(ControllerHostSettings settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Logging.AddFilter("Quartz", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);
        settings.ConfigureLogging?.Invoke(builder.Logging);
        var services = builder.Services;
        services.AddServerTelemetry("tunegw-controller", settings.OtlpEndpoint, withPrometheus: false);
        // The controller's jobs, and the engine it embeds prompts with for semantic drift.
        services.AddTelemetrySource(ControllerTelemetry.Name);
        services.AddTelemetrySource(EngineTelemetry.Name);
        services.AddRedisConnection(settings.RedisConnectionString);
        // The traffic log's reader (the controller writes no traffic, only reads it and the feedback).
        services.AddTrafficLog(o => o.RedisConnectionString = settings.RedisConnectionString);
        services.AddLifecycleStores(settings.RedisConnectionString, settings.Options.ArtifactDirectory, settings.KeyPrefix);
        services.AddHttpClient();
        services.AddRetrainingController(settings.Options, sp =>
        {
            var http = sp.GetRequiredService<IHttpClientFactory>().CreateClient("tunegw-evaluation");
            http.BaseAddress = new Uri(settings.GatewayUrl.TrimEnd('/') + "/");
            http.Timeout = settings.Options.EvaluationTimeout;
            return new GatewayCompletionClient(http, settings.GatewayKey);
        });
        services.AddSingleton(new PipelineSeed(settings.Pipelines));
        services.AddHostedService<PipelineSeeder>();
        return builder.Build();
    }
}
