using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Worker;
using TuneGateway.Storage;
using TuneGateway.Tests.Engine;
using TuneGateway.Tests.Storage;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// A <c>serve</c> host with the traffic log on, API keys (admin, two inference keys, mlops), a
/// recording observer after the log's, and an adapter directory in the artifact layout:
/// <c>support-bot/v3</c> (shout), <c>support-bot/v4</c> (reverse) and <c>pager</c> (shout, for paging tests).
/// </summary>
public abstract class TrafficServeFixture : IAsyncLifetime
{
    public const string AdminKey = "sk-traffic-admin";
    public const string AliceKey = "sk-traffic-alice";
    public const string BobKey = "sk-traffic-bob";
    public const string MlopsKey = "sk-traffic-mlops";

    private readonly string _loraDirectory = Directory.CreateTempSubdirectory("tunegw-traffic-loras-").FullName;

    public WebApplication App { get; private set; } = null!;
    public string BaseUrl { get; private set; } = "";
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };
    public RecordingObserver Observer { get; } = new();
    public InMemoryAliasStore Aliases { get; } = new();

    /// <summary>The log as the host reads it.</summary>
    public ITrafficReader Reader => App.Services.GetRequiredService<ITrafficReader>();

    /// <summary>The host's writer (statistics, pending ids).</summary>
    public ITrafficLog Log => App.Services.GetRequiredService<ITrafficLog>();

    /// <summary>The traffic log of the host under test.</summary>
    protected abstract Task<TrafficLogSettings> TrafficAsync();

    public virtual async Task InitializeAsync()
    {
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"), Path.Combine(_loraDirectory, "support-bot", "v3"));
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"), Path.Combine(_loraDirectory, "support-bot", "v4"));
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"), Path.Combine(_loraDirectory, "pager"));
        ApiKeyEntry[] keys =
        [
            new() { Name = "admin", Key = AdminKey, Roles = [Roles.Admin] },
            new() { Name = "alice", Key = AliceKey, Roles = [Roles.Inference] },
            new() { Name = "bob", Key = BobKey, Roles = [Roles.Inference] },
            new() { Name = "mlops", Key = MlopsKey, Roles = [Roles.Mlops] },
        ];
        App = ServeHost.Create(new WorkerOptions { Engine = TinyEngine(loraDirectory: _loraDirectory) }, new GatewayOptions(), Settings(keys),
            Aliases, Observer, await TrafficAsync());
        await App.StartAsync();
        BaseUrl = ServerTestHost.BaseUrl(App);
        await WaitReadyAsync(Http, BaseUrl);
    }

    public virtual async Task DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        Directory.Delete(_loraDirectory, recursive: true);
    }

    /// <summary>Waits until the log has the entry with this id, and returns it.</summary>
    public async Task<TrafficRecord> LoggedAsync(string id)
    {
        TrafficRecord? record = null;
        await WaitUntilAsync(async () => (record = await Reader.GetAsync(id)) is not null, $"'{id}' in the traffic log");
        return record!;
    }

    private static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }
}

/// <summary><c>serve --redis</c> against a private redis-server.</summary>
public class RedisTrafficServeFixture : TrafficServeFixture
{
    public RedisServerFixture Redis { get; } = new();

    /// <summary>Key prefix of this host's log (so a second store can read it independently).</summary>
    public string KeyPrefix { get; } = "serve-" + Guid.NewGuid().ToString("N")[..8];

    public string DataDirectory { get; } = Directory.CreateTempSubdirectory("tunegw-traffic-spill-").FullName;

    protected virtual void Configure(TrafficLogOptions options)
    {
    }

    protected override async Task<TrafficLogSettings> TrafficAsync()
    {
        await Redis.InitializeAsync();
        return new TrafficLogSettings
        {
            RedisConnectionString = Redis.ConnectionString,
            DataDirectory = DataDirectory,
            Configure = options =>
            {
                options.KeyPrefix = KeyPrefix;
                Configure(options);
            },
        };
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Redis.DisposeAsync();
        Directory.Delete(DataDirectory, recursive: true);
    }
}

/// <summary><c>serve</c> without Redis: the embedded store under a data directory.</summary>
public sealed class EmbeddedTrafficServeFixture : TrafficServeFixture
{
    public string DataDirectory { get; } = Directory.CreateTempSubdirectory("tunegw-traffic-data-").FullName;

    protected override Task<TrafficLogSettings> TrafficAsync() => Task.FromResult(new TrafficLogSettings { DataDirectory = DataDirectory });

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        Directory.Delete(DataDirectory, recursive: true);
    }
}
