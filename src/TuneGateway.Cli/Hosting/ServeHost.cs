using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuneGateway.Controller;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Worker;

namespace TuneGateway.Cli.Hosting;

/// <summary>
/// serve's all-in-one host: the gateway on the public paths, the worker API under
/// <see cref="InProcessWorkerPrefix"/> on the same port, and optionally the retraining controller.
/// It lives here, not in the gateway's assembly, because it is the one host that links the engine
/// and the controller: the gateway forwards to the in-process worker over loopback like to any
/// worker (one routing path), and the worker reports its state in-process. That hop carries an
/// <see cref="InternalHop"/> key known only to this process: without it the worker's routes answer
/// 404, and the key is valid nowhere else.
/// </summary>
public static class ServeHost
{
    /// <summary>Where serve maps its in-process worker; the gateway forwards there over loopback.</summary>
    public const string InProcessWorkerPrefix = "/_worker";

    /// <param name="traffic">The traffic log (null: none); see <see cref="TrafficLogSettings"/>.</param>
    /// <param name="lifecycle">The adapter lifecycle; see <see cref="LifecycleSettings"/>. The seams it leaves null are filled with the engine's and the controller's.</param>
    /// <param name="controller">The retraining controller in this process (null: none); needs <paramref name="lifecycle"/>.</param>
    public static WebApplication Create(WorkerOptions worker, GatewayOptions gateway, HostSettings settings, InMemoryAliasStore? aliases = null, IRequestObserver? observer = null,
        TrafficLogSettings? traffic = null, LifecycleSettings? lifecycle = null, ControllerHosting? controller = null)
    {
        if (controller is not null && lifecycle is null) throw new ArgumentException("The retraining controller runs on the adapter lifecycle's stores: give the lifecycle settings too.", nameof(controller));
        var hop = new InternalHop(InProcessWorkerPrefix);
        // The controller's evaluation requests go through this host's public API, as a client would:
        // with keys on, under a random mlops key of their own (never the hop's, never sent to a worker).
        string controllerKey = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var builder = GatewayHost.CreateBuilder(settings, "tunegw", out var keys, new ApiKeyEntry { Name = "controller", Key = controllerKey, Roles = [Roles.Mlops] });
        builder.Services.AddSingleton(hop);
        worker = worker with { PathPrefix = InProcessWorkerPrefix };
        WorkerHost.AddWorker(builder.Services, worker);
        // serve links the controller: its traces and metrics are exported whether it runs here or not, as the engine's are.
        builder.Services.AddTelemetrySource(ControllerTelemetry.Name);
        builder.Services.AddSingleton<IWorkerStateSink, InProcessStateSink>();
        builder.Services.AddHostedService<WorkerStateReporter>();
        bool open = keys.IsOpen;
        // serve links the engine and the controller: its operator API checks adapters and pipeline
        // definitions with their code, and registers versions on its own worker's base model.
        lifecycle = lifecycle is null ? null : lifecycle with
        {
            BaseModel = lifecycle.BaseModel ?? worker.Engine.ModelDirectory,
            PipelineDefinitions = lifecycle.PipelineDefinitions ?? ControllerPipelineDefinitions.Instance,
            AdapterFormat = lifecycle.AdapterFormat ?? PeftAdapterFormat.Instance,
        };
        var parts = GatewayHost.AddGateway(builder, gateway, keys, aliases, observer, traffic, lifecycle,
            controller is null ? null : services => services.AddInProcessController(controller, () => open ? null : controllerKey));
        var app = builder.Build();
        GatewayHost.UseCommon(app, keys, "server", hop);
        if (controller is not null)
        {
            InProcessController.Validate(app.Services);
            app.Logger.LogInformation("The retraining controller runs in this process");
        }
        app.MapWorkerApi(InProcessWorkerPrefix);
        GatewayHost.MapGateway(app, parts);
        return app;
    }

    /// <summary>serve's worker reports straight into the gateway's registry.</summary>
    private sealed class InProcessStateSink(WorkerRegistry registry) : IWorkerStateSink
    {
        public Task PublishAsync(WorkerState state, CancellationToken cancellationToken)
        {
            registry.Report(state, WorkerTrust.InProcess);
            return Task.CompletedTask;
        }

        public Task RemoveAsync(string workerId, CancellationToken cancellationToken)
        {
            registry.Remove(workerId, inProcess: true);
            return Task.CompletedTask;
        }
    }
}
