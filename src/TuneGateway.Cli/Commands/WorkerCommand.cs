using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Gateway;
using TuneGateway.Worker;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw worker</c>: the OpenAI-compatible API over one engine, optionally reporting to a gateway.</summary>
internal static class WorkerCommand
{
    public static Command Create()
    {
        var engine = new EngineOptionsBinder();
        var server = new ServerOptionsBinder("http://127.0.0.1:8001");
        var gateway = new Option<string?>("--gateway") { Description = "Gateway URL to register with and push state to." };
        var gatewayKey = new Option<string?>("--gateway-key") { Description = "The gateway's worker-role key, to register with it (also TUNEGW_GATEWAY_KEY)." };
        var advertise = new Option<string?>("--advertise-url") { Description = "URL the gateway should forward to (default: the first --urls address)." };
        var workerId = new Option<string?>("--worker-id") { Description = "Id reported to the gateway (default: host name and port)." };

        var command = new Command("worker", "Serve one model and its adapters over the OpenAI-compatible API (behind a gateway, or alone).")
        {
            gateway, gatewayKey, advertise, workerId,
        };
        engine.AddTo(command);
        server.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = new WorkerOptions
            {
                Engine = engine.Bind(parse),
                GatewayUrl = parse.GetValue(gateway),
                GatewayKey = parse.GetValue(gatewayKey) ?? Environment.GetEnvironmentVariable("TUNEGW_GATEWAY_KEY"),
                AdvertiseUrl = parse.GetValue(advertise),
                WorkerId = parse.GetValue(workerId),
            };
            await using var app = WorkerHost.Create(options, server.Bind(parse));
            await app.StartAsync(cancellationToken);
            await app.WaitForShutdownAsync(cancellationToken);
            if (app.Services.GetRequiredService<EngineHost>().LoadError is { } error) throw error;
            return 0;
        });
        return command;
    }
}
