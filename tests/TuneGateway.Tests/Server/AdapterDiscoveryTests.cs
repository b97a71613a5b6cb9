using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Worker;
using TuneGateway.Tests.Engine;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// What a newcomer's SDK sees of a serve with an adapter directory in the artifact layout:
/// every servable adapter listed with its status before first use, <c>models.retrieve</c>,
/// unloads that stick, what /admin/adapters says is served, <c>/health</c> and <c>/version</c>.
/// </summary>
public sealed class AdapterDiscoveryTests : IAsyncLifetime
{
    private const string Admin = "sk-disc-admin", Operator = "sk-disc-operator", Inference = "sk-disc-inference";
    private readonly string _root = Directory.CreateTempSubdirectory("tunegw-discovery-").FullName;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromMinutes(2) };
    private WebApplication _app = null!;
    private string _url = "";

    public async Task InitializeAsync()
    {
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"), Path.Combine(_root, "alpha"));
        Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"), Path.Combine(_root, "beta", "v1"));
        ApiKeyEntry[] keys =
        [
            new() { Name = "admin", Key = Admin, Roles = [Roles.Admin] },
            new() { Name = "operator", Key = Operator, Roles = [Roles.Operator] },
            new() { Name = "inference", Key = Inference, Roles = [Roles.Inference] },
        ];
        _app = ServeHost.Create(new WorkerOptions { Engine = TinyEngine(loraDirectory: _root) }, new GatewayOptions(), Settings(keys),
            lifecycle: new LifecycleSettings { DataDirectory = Path.Combine(_root, ".state"), ArtifactDirectory = _root });
        _url = await StartReadyAsync(_app, _http);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await StopAsync(_app);
        Directory.Delete(_root, recursive: true);
    }

    private static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }

    private async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> GetAsync(string path, string key)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, _url + path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return await SendJsonAsync(_http, request);
    }

    private async Task<Dictionary<string, string?>> ModelsAsync()
    {
        var (status, body, _) = await GetAsync("/v1/models", Inference);
        Assert.Equal(HttpStatusCode.OK, status);
        return body.GetProperty("data").EnumerateArray().ToDictionary(m => m.GetProperty("id").GetString()!, m => m.GetProperty("status").GetString());
    }

    private async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> CompleteAsync(string model) =>
        await SendJsonAsync(_http, Post(_url + "/v1/completions", new { model, prompt = "Hello", max_tokens = 1 }, Inference));

    [Fact]
    public async Task AdaptersAreListedBeforeFirstUseRetrievableAndUnloadsStick()
    {
        // Listed with their status before anyone asked for them (the worker reports its directories with its state).
        await WaitUntilAsync(async () => (await ModelsAsync()).GetValueOrDefault("alpha") == "available", "alpha to be listed as available");
        var models = await ModelsAsync();
        Assert.Equal("available", models["beta@v1"]);
        Assert.Equal("base", models["llama-tiny"]);
        Assert.DoesNotContain(models.Keys, id => id.StartsWith('.'));

        // models.retrieve(): the card, or OpenAI's 404.
        var (status, card, _) = await GetAsync("/v1/models/beta@v1", Inference);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("llama-tiny", card.GetProperty("parent").GetString());
        AssertError(HttpStatusCode.NotFound, await GetAsync("/v1/models/no-such-adapter", Inference), "model", "model_not_found");

        // Used once: loaded (and resident), and /admin/adapters shows it as served even though no lifecycle version exists.
        Assert.Equal(HttpStatusCode.OK, (await CompleteAsync("alpha")).Status);
        await WaitUntilAsync(async () => (await ModelsAsync()).GetValueOrDefault("alpha") is "resident" or "loaded", "alpha to be loaded");
        await WaitUntilAsync(async () =>
        {
            var (_, adapters, _) = await GetAsync("/admin/adapters", Operator);
            return adapters.GetProperty("served").EnumerateArray().Any(a => a.GetProperty("name").GetString() == "alpha" && a.GetProperty("workers").GetInt32() == 1);
        }, "/admin/adapters to show alpha as served");

        // An unload holds: the next request does not bring it back from the directory.
        Assert.Equal(HttpStatusCode.OK, (await _http.SendAsync(Post(_url + "/v1/unload_lora_adapter", new { lora_name = "alpha" }, Admin))).StatusCode);
        var refused = await CompleteAsync("alpha");
        AssertError(HttpStatusCode.NotFound, refused, "model", "model_not_found");
        Assert.Contains("unloaded", refused.Body.GetProperty("error").GetProperty("message").GetString());
        await WaitUntilAsync(async () => !(await ModelsAsync()).ContainsKey("alpha"), "alpha to leave the listing");
        Assert.Equal(HttpStatusCode.NotFound, (await CompleteAsync("alpha")).Status);

        // Until it is explicitly loaded again.
        Assert.Equal(HttpStatusCode.OK, (await _http.SendAsync(Post(_url + "/v1/load_lora_adapter", new { lora_name = "alpha", lora_path = Path.Combine(_root, "alpha") }, Admin))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await CompleteAsync("alpha")).Status);
    }

    [Fact]
    public async Task HealthAndVersionAnswerAsVllmDoes()
    {
        using var health = await _http.GetAsync(_url + "/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        var version = JsonDocument.Parse(await _http.GetStringAsync(_url + "/version")).RootElement.GetProperty("version").GetString();
        Assert.Equal(GatewayHost.Version, version);
        Assert.Matches(@"^\d+\.\d+\.\d+", version);
    }
}
