using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Controller;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Storage;

namespace TuneGateway.Cli.Hosting;

/// <summary>The retraining controller hosted inside a serve process (serve's single-machine mode).</summary>
public sealed record ControllerHosting
{
    public required ControllerOptions Options { get; init; }
    /// <summary>Pipelines from a configuration file, written to the store at start when they differ (null: none).</summary>
    public IReadOnlyList<PipelineDefinition> Pipelines { get; init; } = [];
    /// <summary>The trainer (default: <c>tunegw train</c> as a child process of this executable).</summary>
    public ITrainer? Trainer { get; init; }
}

internal static class InProcessController
{
    /// <summary>
    /// The controller's jobs, monitors and pipeline seeding on the host's lifecycle stores; its
    /// evaluation requests go to this host's own public API, as a client's would.
    /// </summary>
    /// <param name="internalKey">The key those requests carry (null: open mode); read when the first is sent.</param>
    public static void AddInProcessController(this IServiceCollection services, ControllerHosting controller, Func<string?> internalKey)
    {
        services.AddRetrainingController(controller.Options,
            sp => new LoopbackCompletionClient(sp.GetRequiredService<IServer>(), sp.GetRequiredService<IHttpClientFactory>(), internalKey(), controller.Options.EvaluationTimeout), controller.Trainer);
        services.AddSingleton(new PipelineSeed(controller.Pipelines));
        services.AddHostedService<PipelineSeeder>();
        services.AddSingleton<IPipelineSchedule, ControllerPipelineSchedule>();
    }

    /// <summary>Fails at start, with the reason, when the controller has nothing to learn from.</summary>
    public static void Validate(IServiceProvider services)
    {
        if (services.GetService<ITrafficReader>() is null)
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

