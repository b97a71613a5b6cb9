using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Gateway;
using TuneGateway.Worker;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>A standalone worker with one batch slot and one queue place: backpressure and disconnects.</summary>
public sealed class WorkerTests : IAsyncLifetime
{
    private const int LongGeneration = 480;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromMinutes(2) };
    private WebApplication _app = null!;
    private string _url = "";

    public async Task InitializeAsync()
    {
        _app = WorkerHost.Create(new WorkerOptions { Engine = TinyEngine(maxNumSeqs: 1, maxQueue: 1) }, Settings());
        _url = await StartReadyAsync(_app, _http);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await StopAsync(_app);
    }

    private async Task<(int Running, int QueueDepth)> StateAsync()
    {
        var state = await _http.GetFromJsonAsync<JsonElement>(_url + "/internal/state");
        return (state.GetProperty("running").GetInt32(), state.GetProperty("queue_depth").GetInt32());
    }

    [Fact]
    public async Task QueueFullIs429WithRetryAfter()
    {
        // 12 long requests at once on 1 slot + 1 queue place: most are refused at once, each refusal in OpenAI's shape.
        var results = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ =>
            SendJsonAsync(_http, Post(_url + "/v1/completions", new { model = "llama-tiny", prompt = "Hello", max_tokens = LongGeneration, ignore_eos = true }))));
        Assert.Contains(results, r => r.Status == HttpStatusCode.OK);
        var refused = results.Where(r => r.Status != HttpStatusCode.OK).ToArray();
        Assert.NotEmpty(refused);
        foreach (var r in refused)
        {
            AssertError(HttpStatusCode.TooManyRequests, r, null, "queue_full");
            Assert.True(r.Response.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
        }
        Assert.Equal((0, 0), await StateAsync());
    }

    [Fact]
    public async Task ADisconnectedClientCancelsItsGenerationAndFreesTheSlot()
    {
        var engine = _app.Services.GetRequiredService<EngineHost>().Engine!;
        long before = engine.Scheduler.Stats.GeneratedTokens;
        await StreamThenDisconnectAsync(_url + "/v1/completions", new { model = "llama-tiny", prompt = "Hello", max_tokens = LongGeneration, ignore_eos = true, stream = true });

        await WaitUntilAsync(async () => await StateAsync() == (0, 0), "the slot to be freed");
        long generated = engine.Scheduler.Stats.GeneratedTokens - before;
        Assert.True(generated < LongGeneration, $"the generation should have been cut short, but {generated} tokens were generated");
        var after = await SendJsonAsync(_http, Post(_url + "/v1/completions", new { model = "llama-tiny", prompt = "x", max_tokens = 1 }));
        Assert.Equal(HttpStatusCode.OK, after.Status);
    }
}
