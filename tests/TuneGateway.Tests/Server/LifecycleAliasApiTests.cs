using System.Net;
using System.Text;
using System.Text.Json;
using TuneGateway.Tests.Dashboard;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// <c>/admin/aliases</c> on a host with the lifecycle stores: the gateway's alias API edits the
/// lifecycle's routes through LifecycleManager (audited there), answers in its own wire shape, and
/// routes on what it set from the next request.
/// </summary>
public sealed class LifecycleAliasApiTests : IAsyncLifetime
{
    private LifecycleServeHost _host = null!;
    private readonly HttpClient _http = new();

    public async Task InitializeAsync() => _host = await LifecycleServeHost.StartAsync();

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _host.DisposeAsync();
    }

    private HttpRequestMessage Request(HttpMethod method, string path, string? json = null)
    {
        var request = new HttpRequestMessage(method, _host.BaseUrl + path);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        request.Headers.Authorization = new("Bearer", LifecycleServeHost.MlopsKey);
        return request;
    }

    [Fact]
    public async Task AnAliasSetAndDeletedThroughTheApiIsTheLifecyclesAndAudited()
    {
        var (status, put, _) = await SendJsonAsync(_http, Request(HttpMethod.Put, "/admin/aliases/ab",
            """{"versions": [{"model": "shout", "weight": 3}, {"model": "reverse", "weight": 1}], "base_model": "llama-tiny"}"""));
        Assert.True(status == HttpStatusCode.OK, put.ToString());

        var (_, read, _) = await SendJsonAsync(_http, Request(HttpMethod.Get, "/admin/aliases/ab"));
        Assert.Equal(["name", "versions", "base_model", "updated_at"], read.EnumerateObject().Select(p => p.Name));
        Assert.Equal("ab", read.GetProperty("name").GetString());
        Assert.Equal("llama-tiny", read.GetProperty("base_model").GetString());
        Assert.Equal([("shout", 0.75), ("reverse", 0.25)],
            read.GetProperty("versions").EnumerateArray().Select(v => (v.GetProperty("model").GetString()!, v.GetProperty("weight").GetDouble())));
        Assert.Equal(read.GetRawText(), put.GetRawText());

        // The lifecycle's route, the one the gateway routes on (from the next request: to the base model now).
        var route = await _host.Lifecycle.Aliases.GetAsync("ab");
        Assert.Equal(("shout", 0.75, "llama-tiny"), (route!.Arms[0].Model, route.Arms[0].Weight, route.BaseModel));
        var (_, replaced, _) = await SendJsonAsync(_http, Request(HttpMethod.Put, "/admin/aliases/ab", """{"versions": [{"model": "llama-tiny", "weight": 1}]}"""));
        Assert.Equal(JsonValueKind.Null, replaced.GetProperty("base_model").ValueKind); // a PUT replaces the whole alias
        var (served, answer, response) = await SendJsonAsync(_http, Post(_host.BaseUrl + "/v1/completions",
            new { model = "ab", prompt = "x", max_tokens = 1 }, LifecycleServeHost.AdminKey));
        Assert.True(served == HttpStatusCode.OK, answer.ToString());
        Assert.Equal("ab", response.Headers.GetValues("X-TuneGateway-Alias").Single());

        Assert.Equal(HttpStatusCode.NoContent, (await SendJsonAsync(_http, Request(HttpMethod.Delete, "/admin/aliases/ab"))).Status);
        Assert.Null(await _host.Lifecycle.Aliases.GetAsync("ab"));
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Request(HttpMethod.Get, "/admin/aliases/ab")), "name", "alias_not_found");

        var audit = await _host.Lifecycle.Registry.GetAuditAsync("ab");
        Assert.Equal(["alias.set", "alias.set", "alias.delete"], audit.Select(e => e.Action));
        Assert.All(audit, e => Assert.Equal("key:mlops", e.Actor));
        Assert.StartsWith("shout 75", audit[0].To, StringComparison.Ordinal);
    }
}
