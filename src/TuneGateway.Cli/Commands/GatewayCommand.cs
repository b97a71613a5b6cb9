using System.CommandLine;
using Microsoft.Extensions.Hosting;
using TuneGateway.Gateway;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw gateway</c>: the YARP gateway in front of workers.</summary>
internal static class GatewayCommand
{
    public static Command Create()
    {
        var server = new ServerOptionsBinder("http://127.0.0.1:8000");
        var gateway = new GatewayOptionsBinder();
        var traffic = new TrafficOptionsBinder(defaultDataDirectory: null);
        var lifecycle = new LifecycleOptionsBinder(canHostController: false);
        var command = new Command("gateway", "Route OpenAI-compatible requests to workers by base model, adapter residency and load; aliases and A/B splits; auth.");
        gateway.AddTo(command);
        traffic.AddTo(command);
        lifecycle.AddTo(command);
        server.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var trafficSettings = traffic.Bind(parse);
            // The operator API and shared aliases need a store: Redis (several gateways), or --data-dir (one gateway).
            var lifecycleSettings = lifecycle.Bind(parse, trafficSettings, defaultDataDirectory: null);
            await using var app = GatewayHost.Create(gateway.Bind(parse), server.Bind(parse), traffic: trafficSettings, lifecycle: lifecycleSettings);
            await app.StartAsync(cancellationToken);
            await app.WaitForShutdownAsync(cancellationToken);
            return 0;
        });
        return command;
    }
}
