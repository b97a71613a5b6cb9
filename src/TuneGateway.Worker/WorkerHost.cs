using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>The worker's web host: the OpenAI-compatible API over one engine, built from the gateway's common host parts.</summary>
public static class WorkerHost
{
    public static WebApplication Create(WorkerOptions worker, HostSettings settings)
    {
        var builder = GatewayHost.CreateBuilder(settings, "tunegw-worker", out var keys);
        AddWorker(builder.Services, worker);
        if (worker.GatewayUrl is { } gateway)
        {
            builder.Services.AddSingleton<IWorkerStateSink>(sp =>
                new HttpWorkerStateSink(sp.GetRequiredService<IHttpClientFactory>().CreateClient("tunegw-gateway"), gateway, worker.GatewayKey));
            builder.Services.AddHostedService<WorkerStateReporter>();
        }
        var app = builder.Build();
        GatewayHost.UseCommon(app, keys, "worker");
        app.MapWorkerApi();
        GatewayHost.MapFallback(app);
        return app;
    }

    /// <summary>The engine, its status and its telemetry; serve adds them to its gateway host, and maps <see cref="WorkerEndpoints.MapWorkerApi"/> under its prefix.</summary>
    public static void AddWorker(IServiceCollection services, WorkerOptions worker)
    {
        services.AddSingleton(worker);
        services.AddSingleton<EngineHost>();
        services.AddHostedService(sp => sp.GetRequiredService<EngineHost>());
        services.AddSingleton<WorkerStatus>();
        services.AddTelemetrySource(EngineTelemetry.Name);
    }
}
