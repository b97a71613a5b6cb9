using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Worker;

namespace TuneGateway.Tests.Server;

/// <summary>Records what the gateway's observer hook sees.</summary>
public sealed class RecordingObserver : IRequestObserver
{
    public ConcurrentQueue<ProxiedExchange> Exchanges { get; } = new();

    public ValueTask OnExchangeCompletedAsync(ProxiedExchange exchange, CancellationToken cancellationToken)
    {
        Exchanges.Enqueue(exchange);
        return ValueTask.CompletedTask;
    }
}

/// <summary>One <c>serve</c> host (gateway + in-process worker on the tiny model) with API keys, shared by a test class.</summary>
public sealed class ServeFixture : IAsyncLifetime
{
    public const string AdminKey = "sk-test-admin";
    public const string InferenceKey = "sk-test-inference";
    public const string ShoutOnlyKey = "sk-test-shout-only";
    public const string LimitedKey = "sk-test-limited";
    public const string MlopsKey = "sk-test-mlops";

    public WebApplication App { get; private set; } = null!;
    public string BaseUrl { get; private set; } = "";
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };
    public RecordingObserver Observer { get; } = new();
    public InMemoryAliasStore Aliases { get; } = new();

    public async Task InitializeAsync()
    {
        ApiKeyEntry[] keys =
        [
            new() { Name = "admin", Key = AdminKey, Roles = [Roles.Admin] },
            new() { Name = "inference", Key = InferenceKey, Roles = [Roles.Inference] },
            new() { Name = "shout-only", Sha256 = ApiKeyStore.Hash(ShoutOnlyKey), Roles = [Roles.Inference], Models = ["shout"] },
            new() { Name = "limited", Key = LimitedKey, Roles = [Roles.Inference], RequestsPerMinute = 6, Burst = 2 },
            new() { Name = "mlops", Key = MlopsKey, Roles = [Roles.Mlops] },
        ];
        App = ServeHost.Create(new WorkerOptions { Engine = ServerTestHost.TinyEngine() }, new GatewayOptions(), ServerTestHost.Settings(keys), Aliases, Observer);
        await App.StartAsync();
        BaseUrl = ServerTestHost.BaseUrl(App);
        await ServerTestHost.WaitReadyAsync(Http, BaseUrl);
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
