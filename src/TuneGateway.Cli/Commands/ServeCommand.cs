using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Cli.Hosting;
using TuneGateway.Worker;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw serve</c>: the gateway with one in-process worker on one port.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var engine = new EngineOptionsBinder();
        var server = new ServerOptionsBinder("http://127.0.0.1:8000");
        var gateway = new GatewayOptionsBinder();
        string defaultData = Path.Combine(Environment.CurrentDirectory, "data");
        var traffic = new TrafficOptionsBinder(defaultData);
        var lifecycle = new LifecycleOptionsBinder(canHostController: true);
        var command = new Command("serve", "Run everything on one port: the gateway and an in-process worker (the bundled tiny model and its adapters by default).");
        engine.AddTo(command);
        gateway.AddTo(command);
        traffic.AddTo(command);
        lifecycle.AddTo(command);
        server.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var engineOptions = engine.Bind(parse);
            var trafficSettings = traffic.Bind(parse);
            var lifecycleSettings = lifecycle.Bind(parse, trafficSettings, defaultData);
            var controller = lifecycle.BindController(parse, lifecycleSettings, engineOptions.ModelDirectory);
            // Versions the lifecycle publishes are served by name@version from the artifact directory.
            if (lifecycleSettings?.ArtifactDirectory is { } artifacts)
                engineOptions = engineOptions with { Adapters = engineOptions.Adapters with { AdditionalLoraDirectories = [artifacts] } };
            await using var app = ServeHost.Create(new WorkerOptions { Engine = engineOptions }, gateway.Bind(parse), server.Bind(parse),
                traffic: trafficSettings, lifecycle: lifecycleSettings, controller: controller);
            await app.StartAsync(cancellationToken);
            await app.WaitForShutdownAsync(cancellationToken);
            if (app.Services.GetRequiredService<EngineHost>().LoadError is { } error) throw error;
            return 0;
        });
        return command;
    }
}
