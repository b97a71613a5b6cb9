using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// A client that goes away in the middle of a stream through the gateway (serve: YARP forwarding
/// over loopback to the in-process worker, one batch slot): the cancellation reaches the engine,
/// whose sequence ends early and whose slot the next request gets.
/// </summary>
public sealed class GatewayDisconnectTests : IAsyncLifetime
{
    private const int LongGeneration = 480;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromMinutes(2) };
    private WebApplication _app = null!;
    private string _url = "";

    public async Task InitializeAsync()
    {
        _app = ServeHost.Create(new WorkerOptions { Engine = TinyEngine(maxNumSeqs: 1, maxQueue: 1) }, new GatewayOptions(), Settings());
        _url = await StartReadyAsync(_app, _http);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await StopAsync(_app);
    }

    /// <summary>The in-process worker's running sequences, as its state reports them (its routes are not for clients).</summary>
    private Task<int> RunningAsync() => Task.FromResult(_app.Services.GetRequiredService<WorkerStatus>().Snapshot().Running);

    [Theory]
    [InlineData("/v1/completions")]
    [InlineData("/v1/chat/completions")]
    public async Task ADisconnectThroughTheGatewayCancelsTheGenerationAndFreesTheSlot(string path)
    {
        var engine = _app.Services.GetRequiredService<EngineHost>().Engine!;
        long before = engine.Scheduler.Stats.GeneratedTokens;
        // 480 tokens is near the tiny model's 512 positions, and on an idle machine it can finish
        // before the disconnect has crossed both hops; 20 top log-probabilities a token make each
        // step (and each event) heavier, so the generation outlasts the cancellation's trip.
        object body = path.Contains("chat")
            ? new { model = "llama-tiny", messages = new[] { new { role = "user", content = "Hello" } }, max_tokens = LongGeneration, ignore_eos = true, stream = true,
                logprobs = true, top_logprobs = 20 }
            : (object)new { model = "llama-tiny", prompt = "Hello", max_tokens = LongGeneration, ignore_eos = true, stream = true, logprobs = 20 };
        await StreamThenDisconnectAsync(_url + path, body);

        await WaitUntilAsync(async () => await RunningAsync() == 0, "the engine's running sequences to drop to 0");
        long generated = engine.Scheduler.Stats.GeneratedTokens - before;
        Assert.True(generated < LongGeneration, $"the generation should have been cut short, but {generated} tokens were generated");
        // One slot: the next request only runs if the cancelled one gave it back.
        var after = await SendJsonAsync(_http, Post(_url + path, path.Contains("chat")
            ? new { model = "llama-tiny", messages = new[] { new { role = "user", content = "x" } }, max_tokens = 1 }
            : new { model = "llama-tiny", prompt = "x", max_tokens = 1 }));
        Assert.Equal(HttpStatusCode.OK, after.Status);
    }
}
