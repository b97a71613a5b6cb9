using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Controller;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Server.Common;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Server.Lifecycle;

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

/// <summary>Reads pipeline definitions from a JSON file: an array, <c>{"pipelines": [...]}</c>, or <c>{"TuneGateway": {"Pipelines": [...]}}</c>.</summary>
public static class PipelineConfigFile
{
    public static IReadOnlyList<PipelineDefinition> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"The pipeline configuration '{path}' does not exist.", path);
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            root = document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }
        JsonElement? list = root.ValueKind == JsonValueKind.Array ? root
            : Find(root, "pipelines") is { } direct ? direct
            : Find(root, "TuneGateway") is { } section && Find(section, "Pipelines") is { } nested ? nested
            : null;
        if (list is null) return [];
        if (list.Value.ValueKind != JsonValueKind.Array) throw new ArgumentException($"'{path}': the pipelines must be a JSON array.");
        var result = new List<PipelineDefinition>();
        int index = 0;
        foreach (var item in list.Value.EnumerateArray())
        {
            try
            {
                result.Add(PipelineDefinition.FromJson(item));
            }
            catch (Exception ex) when (ex is ArgumentException or JsonException or FormatException)
            {
                throw new ArgumentException($"'{path}', pipeline {index}: {ex.Message}", ex);
            }
            index++;
        }
        var duplicate = result.GroupBy(p => p.Adapter).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"'{path}': adapter '{duplicate.Key}' has more than one pipeline.");
        return result;
    }

    private static JsonElement? Find(JsonElement element, string name)
    {
        if (element.ValueKind != JsonValueKind.Object) return null;
        foreach (var property in element.EnumerateObject())
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase)) return property.Value;
        return null;
    }
}
