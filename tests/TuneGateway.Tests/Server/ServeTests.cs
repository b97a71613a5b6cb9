using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Tests.Engine;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// <c>serve</c> (gateway and in-process worker on one port) over real HTTP on loopback: the
/// official OpenAI client, reference tokens end to end, streaming, errors, auth, rate limits,
/// aliases and the request observer.
/// </summary>
public sealed class ServeTests(ServeFixture serve) : IClassFixture<ServeFixture>
{
    private readonly HttpClient _http = serve.Http;
    private string Url(string path) => serve.BaseUrl + path;

    private ChatClient Chat(string model, string key = ServeFixture.AdminKey) =>
        new(model, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(serve.BaseUrl + "/v1") });

    [Fact]
    public async Task OpenAiClientChatsAndStreamsTheSameText()
    {
        var client = Chat("llama-tiny");
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 6, Temperature = 0 };
        ChatMessage[] messages = [new SystemChatMessage("Be brief."), new UserChatMessage("Say something.")];

        ChatCompletion completion = await client.CompleteChatAsync(messages, options);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        string text = completion.Content[0].Text;
        Assert.False(string.IsNullOrEmpty(text));
        Assert.Equal(6, completion.Usage.OutputTokenCount);
        Assert.True(completion.Usage.InputTokenCount > 5);
        Assert.Equal(completion.Usage.InputTokenCount + 6, completion.Usage.TotalTokenCount);

        var streamed = new StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in client.CompleteChatStreamingAsync(messages, options))
        {
            updates++;
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }
        Assert.Equal(text, streamed.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.True(updates >= 3, "streaming must deliver several chunks");
        Assert.NotNull(usage);
        Assert.Equal(6, usage!.OutputTokenCount);
    }

    [Fact]
    public async Task OpenAiClientCompletionsReturnTheReferenceTokens()
    {
        var reference = Fixtures.LoadReference(Path.Combine(Fixtures.Root, "llama-tiny", "reference.json"));
        // The client's completions class is internal in OpenAI 2.x: send through its own pipeline (auth, transport, errors).
        var openai = new OpenAIClient(new ApiKeyCredential(ServeFixture.InferenceKey), new OpenAIClientOptions { Endpoint = new Uri(serve.BaseUrl + "/v1") });
        var expected = reference.Cases["shout"][0];
        string body = JsonSerializer.Serialize(new
        {
            model = "shout", prompt = expected.PromptIds, max_tokens = expected.GreedyIds.Length, temperature = 0, ignore_eos = true, return_token_ids = true, logprobs = 2,
        });
        using var message = openai.Pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = new Uri(serve.BaseUrl + "/v1/completions");
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromString(body));
        await openai.Pipeline.SendAsync(message);
        Assert.Equal(200, message.Response!.Status);
        using var document = JsonDocument.Parse(message.Response.Content.ToString());
        var root = document.RootElement;
        Assert.Equal("text_completion", root.GetProperty("object").GetString());
        var choice = root.GetProperty("choices")[0];
        Assert.Equal(expected.GreedyIds, choice.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal(expected.PromptIds, root.GetProperty("prompt_token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var logprobs = choice.GetProperty("logprobs");
        Assert.Equal(expected.GreedyIds.Length, logprobs.GetProperty("tokens").GetArrayLength());
        var tokenLogprobs = logprobs.GetProperty("token_logprobs").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        for (int i = 0; i < tokenLogprobs.Length; i++) Assert.True(Math.Abs(expected.GreedyLogprobs[i] - tokenLogprobs[i]) < 1e-3, $"logprob {i}");
        Assert.All(logprobs.GetProperty("top_logprobs").EnumerateArray(), top => Assert.InRange(top.EnumerateObject().Count(), 1, 2));
        Assert.Equal(expected.GreedyIds.Length, root.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task StreamedCompletionMatchesTheAnswerAndTheObserverSeesIt()
    {
        object Body(bool stream) => new { model = "reverse", prompt = "Once upon a time", max_tokens = 8, temperature = 0, ignore_eos = true, stream, stream_options = new { include_usage = true } };
        var (status, answer, _) = await SendJsonAsync(_http, Post(Url("/v1/completions"), Body(false), ServeFixture.AdminKey));
        Assert.Equal(HttpStatusCode.OK, status);
        string expected = answer.GetProperty("choices")[0].GetProperty("text").GetString()!;

        using var response = await _http.SendAsync(Post(Url("/v1/completions"), Body(true), ServeFixture.AdminKey), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        string id = "";
        var text = new StringBuilder();
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => l[6..]).ToArray();
        Assert.Equal("[DONE]", lines[^1]);
        JsonElement? usage = null;
        string? finish = null;
        foreach (string line in lines[..^1])
        {
            using var chunk = JsonDocument.Parse(line);
            id = chunk.RootElement.GetProperty("id").GetString()!;
            foreach (var choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
            {
                text.Append(choice.GetProperty("text").GetString());
                finish ??= choice.GetProperty("finish_reason").GetString();
            }
            if (chunk.RootElement.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
            {
                Assert.Equal(0, chunk.RootElement.GetProperty("choices").GetArrayLength());
                usage = u.Clone();
            }
        }
        Assert.Equal(expected, text.ToString());
        Assert.Equal("length", finish);
        Assert.Equal(8, usage!.Value.GetProperty("completion_tokens").GetInt32());

        await WaitUntilAsync(() => Task.FromResult(serve.Observer.Exchanges.Any(e => e.Stream && e.ResolvedModel == "reverse")), "the observer");
        var seen = serve.Observer.Exchanges.Last(e => e.Stream && e.ResolvedModel == "reverse");
        Assert.Equal(expected, seen.Completions.Single());
        Assert.Equal("length", seen.FinishReasons.Single());
        Assert.Equal(8, seen.CompletionTokens);
        Assert.Equal(200, seen.StatusCode);
        Assert.Equal("admin", seen.ApiKeyName);
        Assert.Equal("/v1/completions", seen.Path);
        Assert.NotNull(seen.TimeToFirstToken);
        Assert.True(seen.TimeToFirstToken <= seen.Duration);
        using var forwarded = JsonDocument.Parse(seen.RequestBody);
        Assert.True(forwarded.RootElement.GetProperty("stream").GetBoolean());
    }

    [Fact]
    public async Task SeveralChoicesAndPromptsAreMerged()
    {
        var (status, body, _) = await SendJsonAsync(_http, Post(Url("/v1/completions"),
            new { model = "llama-tiny", prompt = new[] { "Hello", "World" }, n = 2, max_tokens = 3, seed = 7, temperature = 1.0, ignore_eos = true }, ServeFixture.AdminKey));
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2, 3], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal(12, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // The same seed gives the same choices again.
        var (_, again, _) = await SendJsonAsync(_http, Post(Url("/v1/completions"),
            new { model = "llama-tiny", prompt = new[] { "Hello", "World" }, n = 2, max_tokens = 3, seed = 7, temperature = 1.0, ignore_eos = true }, ServeFixture.AdminKey));
        Assert.Equal(choices.Select(c => c.GetProperty("text").GetString()), again.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()));
    }

    [Fact]
    public async Task InvalidRequestsAreAnsweredInOpenAiShapeNamingTheField()
    {
        async Task<(HttpStatusCode, JsonElement, HttpResponseMessage)> Send(string path, object body) => await SendJsonAsync(_http, Post(Url(path), body, ServeFixture.AdminKey));

        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = "x", temperature = 3 }), "temperature");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = "x", max_tokens = 0 }), "max_tokens");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = "x", logprobs = 21 }), "logprobs");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = "x", n = 0 }), "n");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = "x", top_p = 0 }), "top_p");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = new object[] { 1, "a" } }), "prompt");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = new[] { 100000 } }), "prompt");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { model = "llama-tiny", prompt = "x", max_tokens = 100000 }), "max_tokens", "context_length_exceeded");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/chat/completions", new { model = "llama-tiny" }), "messages");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/chat/completions", new { model = "llama-tiny", messages = new[] { new { content = "no role" } } }), "messages[0].role");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/chat/completions", new { model = "llama-tiny", messages = new[] { new { role = "user", content = "x" } }, top_logprobs = 2 }), "top_logprobs");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", new { prompt = "x" }), "model");
        AssertError(HttpStatusCode.BadRequest, await Send("/v1/completions", "{not json"), null);
        AssertError(HttpStatusCode.NotFound, await Send("/v1/completions", new { model = "no-such-model", prompt = "x" }), "model", "model_not_found");
        AssertError(HttpStatusCode.NotFound, await Send("/v1/chat/completions", new { model = "no-such-model", messages = new[] { new { role = "user", content = "x" } } }), "model", "model_not_found");
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, new HttpRequestMessage(HttpMethod.Get, Url("/v1/embeddings"))), null);
    }

    [Fact]
    public async Task AChatMessageWithAnUnknownRoleIs400NamingIt()
    {
        var wizard = await SendJsonAsync(_http, Post(Url("/v1/chat/completions"), new
        {
            model = "llama-tiny",
            messages = new[] { new { role = "user", content = "hi" }, new { role = "wizard", content = "abracadabra" } },
            max_tokens = 1,
        }, ServeFixture.AdminKey));
        AssertError(HttpStatusCode.BadRequest, wizard, "messages[1].role", "invalid_value");
        Assert.Contains("wizard", wizard.Body.GetProperty("error").GetProperty("message").GetString());

        // Every role OpenAI documents (but the deprecated function role) still reaches the template.
        foreach (string role in new[] { "system", "developer", "user", "assistant", "tool" })
        {
            var ok = await SendJsonAsync(_http, Post(Url("/v1/chat/completions"), new
            {
                model = "llama-tiny",
                messages = new[] { new { role, content = "a" }, new { role = "user", content = "hi" } },
                max_tokens = 1,
            }, ServeFixture.AdminKey));
            Assert.True(ok.Status == HttpStatusCode.OK, $"role {role}: {ok.Status} {ok.Body}");
        }
    }

    [Fact]
    public async Task KeysRolesModelsAndRateLimits()
    {
        var chat = new { model = "shout", messages = new[] { new { role = "user", content = "x" } }, max_tokens = 1 };
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, Post(Url("/v1/chat/completions"), chat)), null, "missing_api_key");
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, Post(Url("/v1/chat/completions"), chat, "sk-wrong")), null, "invalid_api_key");
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, new HttpRequestMessage(HttpMethod.Get, Url("/v1/models"))), null);

        // A key limited to one model: that model passes, another is refused; the in-process worker's path does not exist for clients.
        Assert.Equal(HttpStatusCode.OK, (await SendJsonAsync(_http, Post(Url("/v1/chat/completions"), chat, ServeFixture.ShoutOnlyKey))).Status);
        AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, Post(Url("/v1/chat/completions"), chat with { model = "reverse" }, ServeFixture.ShoutOnlyKey)), "model", "model_not_allowed");
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Post(Url("/_worker/v1/chat/completions"), chat with { model = "reverse" }, ServeFixture.ShoutOnlyKey)), null, "not_found");

        // Roles: inference keys cannot manage adapters or aliases; mlops can manage aliases but not adapters.
        var load = new { lora_name = "x", lora_path = Path.Combine(Fixtures.LlamaTinyAdapters, "shout") };
        AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, Post(Url("/v1/load_lora_adapter"), load, ServeFixture.InferenceKey)), null);
        AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, Post(Url("/v1/load_lora_adapter"), load, ServeFixture.MlopsKey)), null);
        var put = new HttpRequestMessage(HttpMethod.Put, Url("/admin/aliases/role-check"))
        {
            Content = new StringContent("""{"versions":[{"model":"shout","weight":1}]}""", Encoding.UTF8, "application/json"),
        };
        put.Headers.Authorization = new("Bearer", ServeFixture.InferenceKey);
        AssertError(HttpStatusCode.Forbidden, await SendJsonAsync(_http, put), null);

        // Rate limit: a burst of 2, then 429 with Retry-After.
        var statuses = new List<(HttpStatusCode, JsonElement, HttpResponseMessage)>();
        for (int i = 0; i < 4; i++) statuses.Add(await SendJsonAsync(_http, Post(Url("/v1/chat/completions"), chat, ServeFixture.LimitedKey)));
        Assert.Equal(HttpStatusCode.OK, statuses[0].Item1);
        var limited = statuses.First(s => s.Item1 != HttpStatusCode.OK);
        AssertError(HttpStatusCode.TooManyRequests, limited, null, "rate_limit_exceeded");
        Assert.True(limited.Item3.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After must be set");
    }

    [Fact]
    public async Task AliasesSplitStickToUsersAndChangeAtRuntime()
    {
        await SetAliasAsync("ab-bot", ("shout", 50), ("reverse", 50));
        var arms = new Dictionary<string, string>();
        for (int i = 0; i < 40; i++)
        {
            string user = $"user-{i % 8}";
            var (status, body, response) = await SendJsonAsync(_http, Post(Url("/v1/completions"), new { model = "ab-bot", prompt = "x", max_tokens = 1, user }, ServeFixture.AdminKey));
            Assert.Equal(HttpStatusCode.OK, status);
            string arm = response.Headers.GetValues("X-TuneGateway-Arm").Single();
            Assert.Equal(arm, body.GetProperty("model").GetString());
            Assert.Equal("ab-bot", response.Headers.GetValues("X-TuneGateway-Alias").Single());
            if (arms.TryGetValue(user, out var previous)) Assert.Equal(previous, arm); // sticky per user
            arms[user] = arm;
        }
        Assert.Equal(2, arms.Values.Distinct().Count()); // 8 users over a 50/50 split land on both arms (fixed hash: deterministic)

        // The X-TuneGateway-User header is the user when the body has none.
        string headerArm = await ArmAsync("ab-bot", headerUser: "user-3");
        Assert.Equal(arms["user-3"], headerArm);

        // New weights take effect within a second, without restart.
        await SetAliasAsync("ab-bot", ("shout", 0), ("reverse", 1));
        await WaitUntilAsync(async () => await ArmAsync("ab-bot", headerUser: "user-0") == "reverse", "the new weights", TimeSpan.FromSeconds(1.5));
        for (int i = 0; i < 8; i++) Assert.Equal("reverse", await ArmAsync("ab-bot", headerUser: $"user-{i}"));

        var (_, models, _) = await SendJsonAsync(_http, new HttpRequestMessage(HttpMethod.Get, Url("/v1/models")) { Headers = { Authorization = new("Bearer", ServeFixture.AdminKey) } });
        Assert.Contains(models.GetProperty("data").EnumerateArray(), m => m.GetProperty("id").GetString() == "ab-bot");
    }

    private async Task<string> ArmAsync(string alias, string? headerUser)
    {
        var (status, _, response) = await SendJsonAsync(_http, Post(Url("/v1/completions"), new { model = alias, prompt = "x", max_tokens = 1 }, ServeFixture.AdminKey, headerUser));
        Assert.Equal(HttpStatusCode.OK, status);
        return response.Headers.GetValues("X-TuneGateway-Arm").Single();
    }

    private async Task SetAliasAsync(string name, params (string Model, double Weight)[] versions)
    {
        var request = new HttpRequestMessage(HttpMethod.Put, Url("/admin/aliases/" + name))
        {
            Content = new StringContent(JsonSerializer.Serialize(new { versions = versions.Select(v => new { model = v.Model, weight = v.Weight }) }), Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new("Bearer", ServeFixture.MlopsKey);
        var (status, body, _) = await SendJsonAsync(_http, request);
        Assert.True(status == HttpStatusCode.OK, body.ToString());
    }

    [Fact]
    public async Task AdaptersAreListedLoadedAndUnloadedByAdmins()
    {
        var load = new { lora_name = "shout-copy", lora_path = Path.Combine(Fixtures.LlamaTinyAdapters, "shout") };
        using var loaded = await _http.SendAsync(Post(Url("/v1/load_lora_adapter"), load, ServeFixture.AdminKey));
        Assert.Equal(HttpStatusCode.OK, loaded.StatusCode);
        Assert.Contains("shout-copy", await loaded.Content.ReadAsStringAsync());
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/load_lora_adapter"), load, ServeFixture.AdminKey)), "lora_name");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/load_lora_adapter"),
            new { lora_name = "broken", lora_path = Fixtures.LlamaTiny }, ServeFixture.AdminKey)), "lora_path");

        async Task<JsonElement[]> ModelsAsync()
        {
            var (_, body, _) = await SendJsonAsync(_http, new HttpRequestMessage(HttpMethod.Get, Url("/v1/models")) { Headers = { Authorization = new("Bearer", ServeFixture.InferenceKey) } });
            return body.GetProperty("data").EnumerateArray().ToArray();
        }
        // The worker's report reaches the gateway's listing (pushed on change).
        await WaitUntilAsync(async () => (await ModelsAsync()).Any(m => m.GetProperty("id").GetString() == "shout-copy"), "the adapter in /v1/models");
        var card = (await ModelsAsync()).First(m => m.GetProperty("id").GetString() == "shout-copy");
        Assert.Equal("llama-tiny", card.GetProperty("parent").GetString());
        Assert.Equal("model", card.GetProperty("object").GetString());
        Assert.Contains(await ModelsAsync(), m => m.GetProperty("id").GetString() == "llama-tiny" && m.GetProperty("parent").ValueKind == JsonValueKind.Null);

        var (status, _, _) = await SendJsonAsync(_http, Post(Url("/v1/completions"), new { model = "shout-copy", prompt = "x", max_tokens = 1 }, ServeFixture.AdminKey));
        Assert.Equal(HttpStatusCode.OK, status);

        using var unloaded = await _http.SendAsync(Post(Url("/v1/unload_lora_adapter"), new { lora_name = "shout-copy" }, ServeFixture.AdminKey));
        Assert.Equal(HttpStatusCode.OK, unloaded.StatusCode);
        await WaitUntilAsync(async () => (await ModelsAsync()).All(m => m.GetProperty("id").GetString() != "shout-copy"), "the adapter to leave /v1/models");
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Post(Url("/v1/unload_lora_adapter"), new { lora_name = "shout-copy" }, ServeFixture.AdminKey)), "lora_name");
    }

    [Fact]
    public async Task HealthReadinessAndMetricsAreOpen()
    {
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync(Url("/healthz"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync(Url("/readyz"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendJsonAsync(_http, Post(Url("/v1/completions"), new { model = "llama-tiny", prompt = "x", max_tokens = 1 }, ServeFixture.AdminKey))).Status);
        string metrics = await _http.GetStringAsync(Url("/metrics"));
        Assert.Contains("tunegw_worker_queue_depth", metrics);
        Assert.Contains("tunegw_worker_kv_cache_usage", metrics);
        Assert.Contains("tunegw_engine_requests", metrics);
        Assert.Contains("tunegw_gateway_requests", metrics);
        Assert.Contains("tunegw_worker_kv_cache_blocks", metrics);
        Assert.Contains("tunegw_worker_prefix_cache_blocks", metrics);
    }

    [Fact]
    public async Task ARepeatedPromptIsServedFromThePrefixCacheAndMetricsShowIt()
    {
        // Long enough for full 16-token blocks; unique to this test so no other test warms it.
        string prompt = string.Join(" ", Enumerable.Range(0, 30).Select(i => $"prefix-metrics-{i}"));
        double Hits(string text) => text.Split('\n')
            .Where(l => l.StartsWith("tunegw_engine_prefix_cache_hits_total{", StringComparison.Ordinal) && l.Contains("model=\"base\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        double before = Hits(await _http.GetStringAsync(Url("/metrics")));
        string? first = null;
        for (int i = 0; i < 2; i++)
        {
            var (status, body, _) = await SendJsonAsync(_http, Post(Url("/v1/completions"), new { model = "llama-tiny", prompt, max_tokens = 8, temperature = 0 }, ServeFixture.AdminKey));
            Assert.Equal(HttpStatusCode.OK, status);
            string text = body.GetProperty("choices")[0].GetProperty("text").GetString()!;
            if (first is null) first = text;
            else Assert.Equal(first, text);
        }
        // The exporter answers a scrape from a cache for a moment (300 ms by default): poll.
        string metrics = "";
        await WaitUntilAsync(async () => Hits(metrics = await _http.GetStringAsync(Url("/metrics"))) - before >= 16,
            "the second request's reused block in tunegw_engine_prefix_cache_hits_total");
        Assert.Contains("tunegw_engine_prefix_cache_queries_total", metrics);
    }
}
