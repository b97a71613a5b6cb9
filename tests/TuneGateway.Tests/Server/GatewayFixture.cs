using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Tests.Engine;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// An in-process gateway and two <c>tunegw worker</c> processes that register with it, over an
/// adapter directory in the artifact layout (<c>support-bot/v3</c>, <c>support-bot/v4</c>,
/// <c>pinned</c>); worker A starts with <c>pinned</c> loaded.
/// </summary>
public class GatewayFixture : IAsyncLifetime
{
    private readonly string _loraDirectory = Directory.CreateTempSubdirectory("tunegw-loras-").FullName;

    public WebApplication Gateway { get; private set; } = null!;
    public string GatewayUrl { get; private set; } = "";
    public InMemoryAliasStore Aliases { get; } = new();
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };
    public WorkerProcess WorkerA { get; private set; } = null!;
    public WorkerProcess WorkerB { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"), Path.Combine(_loraDirectory, "support-bot", "v3"));
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"), Path.Combine(_loraDirectory, "support-bot", "v4"));
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"), Path.Combine(_loraDirectory, "pinned"));

        // The worker header (off by default) lets these tests see which worker served a request.
        var options = new GatewayOptions { HealthCheckInterval = TimeSpan.FromSeconds(1), StaleAfter = TimeSpan.FromSeconds(5), ExposeWorkerHeader = true };
        Gateway = GatewayHost.Create(options, Settings(), Aliases);
        await Gateway.StartAsync();
        GatewayUrl = BaseUrl(Gateway);

        WorkerA = new WorkerProcess(GatewayUrl, _loraDirectory, "--worker-id", "A", "--lora", "pinned=" + Path.Combine(_loraDirectory, "pinned"));
        WorkerB = new WorkerProcess(GatewayUrl, _loraDirectory, "--worker-id", "B");
        try
        {
            await WaitUntilAsync(async () => (await ReadyWorkersAsync()).Count == 2, "both workers to register");
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"{ex.Message}\nworker A:\n{WorkerA.Output}\nworker B:\n{WorkerB.Output}", ex);
        }
    }

    /// <summary>URLs of the workers the gateway has as ready.</summary>
    public async Task<IReadOnlyList<string>> ReadyWorkersAsync()
    {
        var workers = await Http.GetFromJsonAsync<JsonElement>(GatewayUrl + "/admin/workers");
        return workers.GetProperty("data").EnumerateArray()
            .Where(w => w.GetProperty("state").ValueKind == JsonValueKind.Object && w.GetProperty("state").GetProperty("ready").GetBoolean())
            .Select(w => w.GetProperty("url").GetString()!).ToArray();
    }

    private static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    public async Task DisposeAsync()
    {
        WorkerA.Dispose();
        WorkerB.Dispose();
        Http.Dispose();
        await Gateway.StopAsync();
        await Gateway.DisposeAsync();
        Directory.Delete(_loraDirectory, recursive: true);
    }
}

/// <summary>A second, separate pool for the test that kills a worker.</summary>
public sealed class KillableGatewayFixture : GatewayFixture;
