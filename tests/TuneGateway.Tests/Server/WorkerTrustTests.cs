using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;
using TuneGateway.Tests.Engine;
using TuneGateway.Tests.Storage;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// A loopback HTTP server that records every request it receives (path and credentials) and
/// answers like a worker would: the stand-in for a rogue or a real remote worker.
/// </summary>
public sealed class RecordingListener : IAsyncDisposable
{
    private readonly WebApplication _app;

    public sealed record Received(string Method, string Path, string? Authorization, string? ApiKey);

    private RecordingListener(WebApplication app) => _app = app;

    public ConcurrentQueue<Received> Requests { get; } = new();
    public string Url { get; private set; } = "";

    public static async Task<RecordingListener> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var listener = new RecordingListener(app);
        app.Run(async context =>
        {
            listener.Requests.Enqueue(new Received(context.Request.Method, context.Request.Path, context.Request.Headers.Authorization.FirstOrDefault(),
                context.Request.Headers["X-Api-Key"].FirstOrDefault()));
            if (context.Request.Path.Value?.EndsWith("/readyz", StringComparison.Ordinal) == true) return;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("""{"id":"cmpl-rogue","object":"text_completion","created":0,"model":"claimed","choices":[{"index":0,"text":"ROGUE","finish_reason":"stop"}]}""");
        });
        await app.StartAsync();
        listener.Url = BaseUrl(app);
        return listener;
    }

    /// <summary>Requests other than the health checks' readiness probes (which carry nothing).</summary>
    public IReadOnlyList<Received> Traffic => Requests.Where(r => !r.Path.EndsWith("/readyz", StringComparison.Ordinal)).ToArray();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>
/// Who may register workers, what the gateway presents to them, and what the in-process worker's
/// routes answer the public: driven over real HTTP with real keys (issue #11).
/// </summary>
public sealed class WorkerTrustTests : IAsyncLifetime
{
    private const string Admin = "sk-trust-admin", Operator = "sk-trust-operator", WorkerRole = "sk-trust-worker", Inference = "sk-trust-inference",
        Limited = "sk-trust-limited", WorkerSide = "sk-key-workers-accept";

    private static readonly ApiKeyEntry[] Keys =
    [
        new() { Name = "admin", Key = Admin, Roles = [Roles.Admin] },
        new() { Name = "operator", Key = Operator, Roles = [Roles.Operator] },
        new() { Name = "worker", Key = WorkerRole, Roles = [Roles.Worker] },
        new() { Name = "inference", Key = Inference, Roles = [Roles.Inference] },
        new() { Name = "limited", Key = Limited, Roles = [Roles.Inference], RequestsPerMinute = 5, Burst = 5 },
    ];

    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromMinutes(2) };
    private readonly RecordingObserver _observer = new();
    private WebApplication _serve = null!;
    private string _url = "";

    public async Task InitializeAsync()
    {
        _serve = ServeHost.Create(new WorkerOptions { Engine = TinyEngine() }, new GatewayOptions { WorkerKey = WorkerSide }, Settings(Keys), observer: _observer);
        _url = await StartReadyAsync(_serve, _http);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await StopAsync(_serve);
    }

    /// <summary>A state report that claims <paramref name="adapter"/> is resident at <paramref name="url"/>.</summary>
    internal static object Claim(string workerId, string url, string adapter) => new
    {
        worker_id = workerId, url, base_model = "llama-tiny", ready = true, max_model_len = 2048,
        resident_adapters = new[] { adapter }, loaded_adapters = new[] { adapter }, free_adapter_slots = 4, max_loras = 8, slots = 8,
    };

    private async Task<HttpStatusCode> CompleteAsync(string model, string key)
    {
        using var response = await _http.SendAsync(Post(_url + "/v1/completions", new { model, prompt = "Hello", max_tokens = 1 }, key));
        return response.StatusCode;
    }

    [Fact]
    public async Task AnOperatorOrAdminKeyCannotRegisterAWorkerAndTheRogueReceivesNothing()
    {
        await using var rogue = await RecordingListener.StartAsync();
        foreach (string key in new[] { Operator, Admin, Inference })
            AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, Post(_url + "/internal/workers", Claim("rogue", rogue.Url, "shout"), key)), null, "insufficient_permissions");
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, Post(_url + "/internal/workers", Claim("rogue", rogue.Url, "shout"))), null, "missing_api_key");

        for (int i = 0; i < 10; i++) Assert.Equal(HttpStatusCode.OK, await CompleteAsync("shout", Inference));
        Assert.Empty(rogue.Requests);
    }

    [Fact]
    public async Task AWorkerKeyRegistersAndTheWorkerSeesOnlyTheWorkerKeyNeverTheHopKeyOrTheClients()
    {
        await using var remote = await RecordingListener.StartAsync();
        Assert.Equal(HttpStatusCode.NoContent, (await SendJsonAsync(_http, Post(_url + "/internal/workers", Claim("remote", remote.Url, "remote-only"), WorkerRole))).Status);

        for (int i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.OK, await CompleteAsync("remote-only", Inference));
        var traffic = remote.Traffic;
        Assert.Equal(3, traffic.Count);
        Assert.All(traffic, r =>
        {
            Assert.Equal("Bearer " + WorkerSide, r.Authorization);
            Assert.Null(r.ApiKey);
        });
        string hopKey = _serve.Services.GetRequiredService<InternalHop>().Key;
        Assert.DoesNotContain(remote.Requests, r => r.Authorization?.Contains(hopKey, StringComparison.Ordinal) == true);

        // A worker key is no key of the public API, and cannot even list workers.
        AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, Post(_url + "/v1/completions", new { model = "shout", prompt = "x", max_tokens = 1 }, WorkerRole)), null);
        AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, Get("/admin/workers", WorkerRole)), null);

        // Deregistration by id with two workers in the pool (serve's own and this one).
        Assert.Equal(HttpStatusCode.NoContent, (await _http.SendAsync(Request(HttpMethod.Delete, "/internal/workers/remote", WorkerRole))).StatusCode);
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Request(HttpMethod.Delete, "/internal/workers/remote", WorkerRole)), "id", "worker_not_found");
        // serve's own worker cannot be withdrawn or taken over from outside.
        string inProcessUrl = _serve.Services.GetRequiredService<WorkerRegistry>().All.Single(w => w.Trust == WorkerTrust.InProcess).Url;
        AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, Post(_url + "/internal/workers", Claim("takeover", inProcessUrl, "shout"), WorkerRole)), "url", "worker_url_taken");
        Assert.Equal(HttpStatusCode.NotFound, (await _http.SendAsync(Request(HttpMethod.Delete, "/internal/workers/" + Uri.EscapeDataString(inProcessUrl), WorkerRole))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, await CompleteAsync("shout", Inference));
    }

    [Fact]
    public async Task TheHopKeyIsValidNowhereOnThePublicApi()
    {
        string hopKey = _serve.Services.GetRequiredService<InternalHop>().Key;
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, Get("/admin/whoami", hopKey)), null, "invalid_api_key");
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, Post(_url + "/v1/load_lora_adapter",
            new { lora_name = "hop", lora_path = Path.Combine(Fixtures.LlamaTinyAdapters, "shout") }, hopKey)), null, "invalid_api_key");
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, Post(_url + "/v1/completions", new { model = "shout", prompt = "x", max_tokens = 1 }, hopKey)), null, "invalid_api_key");
    }

    [Fact]
    public async Task TheInProcessWorkersRoutesDoNotExistForClientsSoNothingBypassesTheRateLimitOrTheLog()
    {
        int logged = _observer.Exchanges.Count;
        var body = new { model = "shout", prompt = "Hello", max_tokens = 1 };
        for (int i = 0; i < 20; i++)
            AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Post(_url + "/_worker/v1/completions", body, Limited)), null, "not_found");
        foreach (string key in new[] { Admin, "sk-wrong" })
            AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Post(_url + "/_worker/v1/completions", body, key)), null, "not_found");
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Get("/_worker/internal/state", Admin)), null, "not_found");
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Post(_url + "/_worker/v1/load_lora_adapter",
            new { lora_name = "x", lora_path = Path.Combine(Fixtures.LlamaTinyAdapters, "shout") }, Admin)), null, "not_found");
        Assert.Equal(logged, _observer.Exchanges.Count);

        // The limited key still has its whole burst on the public path: the 404s spent none of it.
        for (int i = 0; i < 5; i++) Assert.Equal(HttpStatusCode.OK, await CompleteAsync("shout", Limited));
        Assert.Equal(HttpStatusCode.TooManyRequests, await CompleteAsync("shout", Limited));
    }

    [Fact]
    public async Task UnknownModelsFoldIntoOneMetricLabel()
    {
        string made = "made-up-" + Guid.NewGuid().ToString("N");
        for (int i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.NotFound, await CompleteAsync(made + i, Inference));
        Assert.Equal(HttpStatusCode.OK, await CompleteAsync("reverse", Inference));
        string metrics = await _http.GetStringAsync(_url + "/metrics");
        Assert.DoesNotContain(made, metrics);
        Assert.Matches(new Regex(@"^tunegw_gateway_requests_total\{[^}]*model=""other""[^}]*status=""404""", RegexOptions.Multiline), metrics);
        Assert.Matches(new Regex(@"^tunegw_gateway_requests_total\{[^}]*model=""reverse""", RegexOptions.Multiline), metrics);
    }

    [Fact]
    public async Task ClientResponsesTellNothingOfTheWorkers()
    {
        string inProcessUrl = _serve.Services.GetRequiredService<WorkerRegistry>().All.Single().Url;
        foreach (var (path, body) in new (string, object)[]
                 {
                     ("/v1/completions", new { model = "shout", prompt = "Hello", max_tokens = 2 }),
                     ("/v1/completions", new { model = "shout", prompt = "Hello", max_tokens = 2, stream = true }),
                     ("/v1/chat/completions", new { model = "reverse", messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 }),
                     ("/v1/completions", new { model = "no-such-model", prompt = "Hello" }),
                 })
        {
            using var response = await _http.SendAsync(Post(_url + path, body, Inference));
            string text = await response.Content.ReadAsStringAsync();
            var headers = response.Headers.Concat(response.Content.Headers).ToArray();
            Assert.DoesNotContain(headers, h => h.Key.Equals(GatewayHost.WorkerHeader, StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain(headers, h => h.Value.Any(v => v.Contains(inProcessUrl, StringComparison.OrdinalIgnoreCase) || v.Contains("/_worker", StringComparison.Ordinal)));
            Assert.DoesNotContain(inProcessUrl, text);
        }
    }

    [Fact]
    public void AWorkerKeyThatIsAlsoAGatewayKeyIsRefusedAtStart()
    {
        var error = Assert.Throws<ArgumentException>(() => GatewayHost.Create(new GatewayOptions { WorkerKey = Admin }, Settings(Keys)));
        Assert.Contains("--worker-key", error.Message);
    }

    private HttpRequestMessage Get(string path, string key) => Request(HttpMethod.Get, path, key);

    private HttpRequestMessage Request(HttpMethod method, string path, string key)
    {
        var request = new HttpRequestMessage(method, _url + path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }
}

/// <summary>A standalone gateway: open mode, the allow-list, and what /admin/workers says of a dead worker (on a clock the test moves).</summary>
public sealed class WorkerRegistrationTests
{
    private static async Task<(WebApplication App, string Url)> GatewayAsync(GatewayOptions options, IReadOnlyList<ApiKeyEntry>? keys = null, TimeProvider? time = null)
    {
        var settings = Settings(keys) with
        {
            ConfigureServices = services => { if (time is not null) services.AddSingleton(time); },
        };
        var app = GatewayHost.Create(options, settings);
        await app.StartAsync();
        return (app, BaseUrl(app));
    }

    [Fact]
    public async Task InOpenModeAWorkerThatRegisteredItselfReceivesNoCredentialAtAll()
    {
        await using var rogue = await RecordingListener.StartAsync();
        var (app, url) = await GatewayAsync(new GatewayOptions { WorkerKey = "sk-for-workers" });
        await using var _ = app;
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.NoContent, (await SendJsonAsync(http, Post(url + "/internal/workers", WorkerTrustTests.Claim("anon", rogue.Url, "claimed")))).Status);
        using var request = Post(url + "/v1/completions", new { model = "claimed", prompt = "x", max_tokens = 1 }, key: "sk-client-secret");
        request.Headers.Add("X-Api-Key", "sk-client-secret-2");
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(request)).StatusCode);
        var received = Assert.Single(rogue.Traffic);
        Assert.Null(received.Authorization);
        Assert.Null(received.ApiKey);
    }

    [Fact]
    public async Task RegistrationHonoursTheAllowList()
    {
        ApiKeyEntry[] keys = [new() { Name = "worker", Key = "sk-w", Roles = [Roles.Worker] }];
        await using var worker = await RecordingListener.StartAsync();
        using var http = new HttpClient();
        var (denying, denyingUrl) = await GatewayAsync(new GatewayOptions { WorkerAllowList = ["10.0.0.0/8", "*.workers.internal"] }, keys);
        await using (denying)
        {
            AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(http, Post(denyingUrl + "/internal/workers", WorkerTrustTests.Claim("w", worker.Url, "a"), "sk-w")), "url", "worker_url_not_allowed");
            Assert.Empty(denying.Services.GetRequiredService<WorkerRegistry>().All);
        }
        var (allowing, allowingUrl) = await GatewayAsync(new GatewayOptions { WorkerAllowList = ["127.0.0.1/32"] }, keys);
        await using (allowing)
            Assert.Equal(HttpStatusCode.NoContent, (await SendJsonAsync(http, Post(allowingUrl + "/internal/workers", WorkerTrustTests.Claim("w", worker.Url, "a"), "sk-w"))).Status);
    }

    [Theory]
    [InlineData("http://10.1.2.3:8001", true)]
    [InlineData("http://11.1.2.3:8001", false)]
    [InlineData("http://[fd00::5]:8001", true)]
    [InlineData("http://w-0.workers.internal:8001", true)]
    [InlineData("http://workers.internal.evil.com:8001", false)]
    [InlineData("http://evilworkers.internal:8001", false)]
    [InlineData("http://exact-host:9000", true)]
    [InlineData("http://exact-host:9001", false)]
    [InlineData("https://exact-host:9000", false)]
    [InlineData("http://pinned:8001/base/sub", true)]
    [InlineData("http://pinned:8001/basement", false)]
    public void AllowListMatchesCidrsHostPatternsAndUrlPrefixes(string url, bool allowed)
    {
        var list = new WorkerAllowList(["10.0.0.0/8", "fd00::/8", "*.workers.internal", "http://exact-host:9000", "http://pinned:8001/base"]);
        Assert.Equal(allowed, list.Allows(WorkerRegistry.Normalize(url)));
    }

    [Fact]
    public void AllowListEntriesThatAreNothingAreRefused()
    {
        Assert.Throws<ArgumentException>(() => new WorkerAllowList(["10.0.0.0/99"]));
        Assert.Throws<ArgumentException>(() => new WorkerAllowList(["ftp://x"]));
        Assert.True(new WorkerAllowList([]).AllowsAll);
    }

    [Fact]
    public async Task AWorkerThatStopsReportingIsSilentAndOneThatCannotBeReachedIsUnreachable()
    {
        var clock = new ManualTimeProvider(DateTimeOffset.UtcNow);
        var (app, url) = await GatewayAsync(new GatewayOptions(), time: clock);
        await using var _ = app;
        using var http = new HttpClient();
        await using var alive = await RecordingListener.StartAsync();
        string dead = $"http://127.0.0.1:{FreePort()}";
        Assert.Equal(HttpStatusCode.NoContent, (await SendJsonAsync(http, Post(url + "/internal/workers", WorkerTrustTests.Claim("alive", alive.Url, "a")))).Status);
        Assert.Equal(HttpStatusCode.NoContent, (await SendJsonAsync(http, Post(url + "/internal/workers", WorkerTrustTests.Claim("dead", dead, "only-dead")))).Status);
        Assert.Equal("ready", await StatusAsync(http, url, "alive"));
        Assert.Equal("ready", await StatusAsync(http, url, "dead"));

        // Forwarding to the dead one fails to connect: the request is retried on the other, and the dead
        // one is unreachable at once, not after ten seconds.
        var (status, _, _) = await SendJsonAsync(http, Post(url + "/v1/completions", new { model = "only-dead", prompt = "x", max_tokens = 1 }));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Single(alive.Traffic);
        Assert.Equal("unreachable", await StatusAsync(http, url, "dead"));

        // Silence past SilentAfter: not ready, even though its last report said ready.
        clock.Advance(new GatewayOptions().SilentAfter + TimeSpan.FromSeconds(1));
        Assert.Equal("silent", await StatusAsync(http, url, "alive"));
        // A new report brings it back.
        Assert.Equal(HttpStatusCode.NoContent, (await SendJsonAsync(http, Post(url + "/internal/workers", WorkerTrustTests.Claim("alive", alive.Url, "a")))).Status);
        Assert.Equal("ready", await StatusAsync(http, url, "alive"));
    }

    private static async Task<string> StatusAsync(HttpClient http, string url, string workerId)
    {
        var workers = JsonDocument.Parse(await http.GetStringAsync(url + "/admin/workers")).RootElement.GetProperty("data");
        var worker = workers.EnumerateArray().Single(w => w.GetProperty("state").GetProperty("worker_id").GetString() == workerId);
        Assert.Equal(worker.GetProperty("status").GetString() == "ready", worker.GetProperty("ready").GetBoolean());
        return worker.GetProperty("status").GetString()!;
    }
}

/// <summary><c>tunegw worker</c> as a newcomer starts it: no --model, so the bundled model and its adapters.</summary>
public sealed class WorkerCommandDefaultsTests
{
    [Fact]
    public async Task TheBundledModelsWorkerServesItsBundledAdaptersByName()
    {
        using var worker = new WorkerProcess([]);
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        try
        {
            await WaitReadyAsync(http, worker.Url);
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException(ex.Message + "\n" + worker.Output, ex);
        }
        foreach (string adapter in new[] { "shout", "reverse" })
        {
            var (status, body, _) = await SendJsonAsync(http, Post(worker.Url + "/v1/completions", new { model = adapter, prompt = "Hello", max_tokens = 2 }));
            Assert.True(status == HttpStatusCode.OK, body.ToString());
        }
    }
}
