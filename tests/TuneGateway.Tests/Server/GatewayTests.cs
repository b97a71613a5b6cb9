using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using TuneGateway.Storage.Lifecycle;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// The gateway in front of two real worker processes on loopback: A/B splits, stickiness, adapter
/// affinity, client disconnects, errors.
/// </summary>
public sealed class GatewayTests(GatewayFixture pool) : IClassFixture<GatewayFixture>
{
    private readonly HttpClient _http = pool.Http;

    private async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> CompleteAsync(string model, string? user = null, int maxTokens = 1) =>
        await SendJsonAsync(_http, Post(pool.GatewayUrl + "/v1/completions", user is null
            ? new { model, prompt = "Hello", max_tokens = maxTokens }
            : (object)new { model, prompt = "Hello", max_tokens = maxTokens, user }));

    private static string Header(HttpResponseMessage response, string name) => response.Headers.GetValues(name).Single();

    [Fact]
    public async Task WeightsHoldOver2000RequestsAndUsersStick()
    {
        // Relative weights, as PUT /admin/aliases takes them; the gateway sees the change by the store's watch.
        await pool.Aliases.SetAliasAsync("support-bot", [new("support-bot@v3", 90, "control"), new("support-bot@v4", 10, "candidate")], baseModel: null, "test");
        await WaitUntilAsync(async () => (await CompleteAsync("support-bot")).Status == HttpStatusCode.OK, "the alias to route");
        var arms = new string[2000];
        await Parallel.ForEachAsync(Enumerable.Range(0, arms.Length), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) =>
        {
            var (status, body, response) = await CompleteAsync("support-bot", user: $"customer-{i}");
            Assert.True(status == HttpStatusCode.OK, body.ToString());
            arms[i] = Header(response, "X-TuneGateway-Arm");
            Assert.Equal(arms[i], body.GetProperty("model").GetString());
        });
        int v4 = arms.Count(a => a == "support-bot@v4");
        Assert.Equal(arms.Length, v4 + arms.Count(a => a == "support-bot@v3"));
        // 10 % of 2000 is 200 with a standard deviation of about 13.4: accept five of them either way.
        Assert.InRange(v4, 133, 267);

        // The same users get the same arms again, whichever worker serves them.
        for (int i = 0; i < 40; i++)
        {
            var (_, _, response) = await CompleteAsync("support-bot", user: $"customer-{i}");
            Assert.Equal(arms[i], Header(response, "X-TuneGateway-Arm"));
        }
    }

    [Fact]
    public async Task AWorkerWithTheAdapterResidentGetsItsTraffic()
    {
        var servedBy = new List<string>();
        for (int i = 0; i < 20; i++)
        {
            var (status, body, response) = await CompleteAsync("pinned");
            Assert.True(status == HttpStatusCode.OK, body.ToString());
            servedBy.Add(Header(response, "X-TuneGateway-Worker"));
        }
        Assert.All(servedBy, worker => Assert.Equal(pool.WorkerA.Url, worker));

        // The base model has no such preference: idle workers share it.
        var baseServedBy = new HashSet<string>();
        for (int i = 0; i < 40 && baseServedBy.Count < 2; i++)
        {
            var (_, _, response) = await CompleteAsync("llama-tiny");
            baseServedBy.Add(Header(response, "X-TuneGateway-Worker"));
        }
        Assert.Equal(2, baseServedBy.Count);
    }

    [Fact]
    public async Task AClientThatDisconnectsThroughTheGatewayFreesItsSlot()
    {
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 });
        using var cancel = new CancellationTokenSource();
        var response = await client.SendAsync(Post(pool.GatewayUrl + "/v1/completions",
            new { model = "llama-tiny", prompt = "Hello", max_tokens = 480, ignore_eos = true, stream = true }), HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        string worker = Header(response, "X-TuneGateway-Worker");
        double abortsBefore = await AbortsAsync(worker);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
        Assert.StartsWith("data: {", await reader.ReadLineAsync(cancel.Token));
        cancel.Cancel();
        response.Dispose();

        // The gateway cancels the forwarded request; the worker ends the generation (an abort, not a finish) and frees the slot.
        await WaitUntilAsync(async () => await AbortsAsync(worker) > abortsBefore, "the worker to abort the generation");
        await WaitUntilAsync(async () =>
        {
            var state = JsonDocument.Parse(await _http.GetStringAsync(worker + "/internal/state")).RootElement;
            return state.GetProperty("running").GetInt32() == 0 && state.GetProperty("queue_depth").GetInt32() == 0;
        }, "the slot to be freed");
    }

    /// <summary>Requests the worker's engine ended as aborted, from its Prometheus metrics.</summary>
    private async Task<double> AbortsAsync(string worker)
    {
        string metrics = await _http.GetStringAsync(worker + "/metrics");
        return Regex.Matches(metrics, @"^tunegw_engine_requests_total\{[^}]*finish_reason=""abort""[^}]*\} (\S+)", RegexOptions.Multiline)
            .Sum(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task ErrorsPassThroughInOpenAiShape()
    {
        AssertError(HttpStatusCode.NotFound, await CompleteAsync("no-such-adapter"), "model", "model_not_found");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(pool.GatewayUrl + "/v1/chat/completions",
            new { model = "llama-tiny", messages = new[] { new { role = "user", content = "x" } }, n = 1000 })), "n");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(pool.GatewayUrl + "/v1/completions", new { prompt = "x" })), "model");
        var (status, models, _) = await SendJsonAsync(_http, new HttpRequestMessage(HttpMethod.Get, pool.GatewayUrl + "/v1/models"));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains(models.GetProperty("data").EnumerateArray(), m => m.GetProperty("id").GetString() == "pinned" && m.GetProperty("parent").GetString() == "llama-tiny");
    }
}

/// <summary>A worker killed under load: every request that had not started streaming still succeeds.</summary>
public sealed class GatewayFailoverTests(KillableGatewayFixture pool) : IClassFixture<KillableGatewayFixture>
{
    [Fact]
    public async Task KillingAWorkerDuringLoadFailsNoRequest()
    {
        const int total = 240;
        int completed = 0;
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var servedBy = new System.Collections.Concurrent.ConcurrentBag<string>();
        var load = Parallel.ForEachAsync(Enumerable.Range(0, total), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
        {
            var (status, body, response) = await SendJsonAsync(pool.Http, Post(pool.GatewayUrl + "/v1/completions",
                new { model = "llama-tiny", prompt = $"Request {i}", max_tokens = 24, ignore_eos = true }));
            if (status != HttpStatusCode.OK) failures.Add($"{(int)status}: {body}");
            else if (Interlocked.Increment(ref completed) > total / 2) servedBy.Add(response.Headers.GetValues("X-TuneGateway-Worker").Single());
        });
        await WaitUntilAsync(() => Task.FromResult(Volatile.Read(ref completed) >= total / 4), "a quarter of the load");
        pool.WorkerB.Kill();
        await load;

        Assert.Empty(failures);
        Assert.Equal(total, completed);
        // Requests caught on the dead worker were retried on the other one.
        string metrics = await pool.Http.GetStringAsync(pool.GatewayUrl + "/metrics");
        var retries = Regex.Match(metrics, @"^tunegw_gateway_retries_total\{[^}]*\} (\S+)", RegexOptions.Multiline);
        Assert.True(retries.Success && double.Parse(retries.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 0, "no request was retried");
        // B leaves the pool (its reports stop); what is served afterwards is served by A.
        await WaitUntilAsync(async () => (await pool.ReadyWorkersAsync()).SequenceEqual([pool.WorkerA.Url]), "the dead worker to leave the pool");
        for (int i = 0; i < 10; i++)
        {
            var (status, _, response) = await SendJsonAsync(pool.Http, Post(pool.GatewayUrl + "/v1/completions", new { model = "llama-tiny", prompt = "x", max_tokens = 1 }));
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(pool.WorkerA.Url, response.Headers.GetValues("X-TuneGateway-Worker").Single());
        }
    }
}
