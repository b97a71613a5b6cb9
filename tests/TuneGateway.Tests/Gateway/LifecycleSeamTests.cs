using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Cli.Hosting;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Controller.Statistics;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Worker;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Gateway;

/// <summary>
/// The operator API's seams on a gateway host (no worker, no controller in the process): composed
/// as <c>tunegw gateway</c> composes it, with the controller's pipeline rules and the engine's
/// adapter format, it checks what it did before the split; composed without them it says so with a
/// 501 rather than storing what it cannot check.
/// </summary>
public sealed class LifecycleSeamTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("tunegw-seams-").FullName;

    private LifecycleSettings Lifecycle() => new() { DataDirectory = Path.Combine(_root, "data"), ArtifactDirectory = Path.Combine(_root, "artifacts") };

    private static async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpClient http, HttpMethod method, string url, object? body = null)
    {
        using var request = new HttpRequestMessage(method, url) { Content = body is null ? null : JsonContent.Create(body) };
        using var response = await http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private static string ErrorCode(JsonElement body) => body.GetProperty("error").GetProperty("code").GetString()!;

    [Fact]
    public async Task WithoutTheSeamsPipelineWritesAndRegistrationAnswer501()
    {
        await using var app = GatewayHost.Create(new GatewayOptions(), Settings(), lifecycle: Lifecycle());
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(BaseUrl(app) + "/") };

        var put = await SendAsync(http, HttpMethod.Put, "admin/pipelines/bot", new { });
        Assert.Equal(HttpStatusCode.NotImplemented, put.Status);
        Assert.Equal("no_pipeline_rules", ErrorCode(put.Body));
        var register = await SendAsync(http, HttpMethod.Post, "admin/adapters/bot/versions", new { path = _root });
        Assert.Equal(HttpStatusCode.NotImplemented, register.Status);
        Assert.Equal("no_adapter_format", ErrorCode(register.Body));
        // What needs neither still works.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(http, HttpMethod.Get, "admin/pipelines")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(http, HttpMethod.Get, "admin/pipelines/bot")).Status);
        await app.StopAsync();
    }

    [Fact]
    public async Task ComposedLikeTunegwGatewayItChecksDefinitionsAndAdapters()
    {
        var lifecycle = Lifecycle() with { PipelineDefinitions = ControllerPipelineDefinitions.Instance, AdapterFormat = PeftAdapterFormat.Instance };
        await using var app = GatewayHost.Create(new GatewayOptions(), Settings(), lifecycle: lifecycle);
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(BaseUrl(app) + "/") };

        var bad = await SendAsync(http, HttpMethod.Put, "admin/pipelines/bot", new { schedule = new { cron = "every day" } });
        Assert.Equal(HttpStatusCode.BadRequest, bad.Status);
        Assert.Equal("schedule.cron", bad.Body.GetProperty("error").GetProperty("param").GetString());
        var good = await SendAsync(http, HttpMethod.Put, "admin/pipelines/bot", new { schedule = new { cron = "0 0 3 * * ?" } });
        Assert.Equal(HttpStatusCode.OK, good.Status);
        // Stored as the controller's canonical form, defaults filled in.
        var stored = new PipelineDefinition { Adapter = "bot", Schedule = new ScheduleSettings { Cron = "0 0 3 * * ?" } }.ToJson();
        Assert.True(JsonElement.DeepEquals(stored, good.Body.GetProperty("definition")), good.Body.GetRawText());
        // No controller in this process: no schedule to ask for the next run.
        var got = await SendAsync(http, HttpMethod.Get, "admin/pipelines/bot");
        Assert.Equal(JsonValueKind.Null, got.Body.GetProperty("next_run").ValueKind);

        var notAdapter = await SendAsync(http, HttpMethod.Post, "admin/adapters/bot/versions", new { path = _root });
        Assert.Equal(HttpStatusCode.BadRequest, notAdapter.Status);
        Assert.Equal("path", notAdapter.Body.GetProperty("error").GetProperty("param").GetString());
        await app.StopAsync();
    }

    /// <summary>The drift history is served as the controller stored it, which is what deserializing it into its records and back gave.</summary>
    [Fact]
    public async Task DriftHistoryIsServedAsTheControllerWroteIt()
    {
        await using var app = GatewayHost.Create(new GatewayOptions(), Settings(), lifecycle: Lifecycle());
        var thresholds = new DriftThresholds();
        List<DriftCheck> checks = [.. Enumerable.Range(0, 2).Select(i => new DriftCheck(DateTimeOffset.UnixEpoch.AddHours(i), "v1",
            new DriftReport([new("prompt_tokens", 1000, 300, 0.1 * (i + 1), 0.08, 0.2, KsPValueMethod.Auto, true, false, false)],
                new TokenDrift(0.03, 64, 50_000, 12_000, 0.02, true, false), null, [], thresholds), "training_data"))];
        var written = JsonSerializer.SerializeToElement(checks, PipelineDefinition.Json);
        await app.Services.GetRequiredService<LifecycleManager>().SavePipelineStateAsync("bot", DriftMonitor.HistoryKey, written);
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(BaseUrl(app) + "/") };

        var drift = await SendAsync(http, HttpMethod.Get, "admin/adapters/bot/drift");
        Assert.Equal(HttpStatusCode.OK, drift.Status);
        var roundTripped = JsonSerializer.SerializeToElement(written.Deserialize<List<DriftCheck>>(PipelineDefinition.Json), PipelineDefinition.Json);
        Assert.True(JsonElement.DeepEquals(roundTripped, drift.Body.GetProperty("history")), drift.Body.GetRawText());
        Assert.True(JsonElement.DeepEquals(roundTripped[1], drift.Body.GetProperty("current")));
        var none = await SendAsync(http, HttpMethod.Get, "admin/adapters/other/drift");
        Assert.Equal(JsonValueKind.Null, none.Body.GetProperty("current").ValueKind);
        Assert.Equal(0, none.Body.GetProperty("history").GetArrayLength());
        await app.StopAsync();
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // A store file still held open by a host being torn down: the temp directory is left behind.
        }
    }
}
