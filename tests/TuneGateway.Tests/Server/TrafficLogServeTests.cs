using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using TuneGateway.Gateway.Common;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// The traffic log through <c>serve</c> over real HTTP on loopback: completions (through an alias with
/// two arms, a versioned adapter, the base model, token-id prompts, errors) and streamed chats are
/// logged with every field; feedback round trips; the admin API pages; evaluation requests stay out.
/// Run against Redis and against the embedded store.
/// </summary>
public abstract class TrafficLogServeTests(TrafficServeFixture serve)
{
    private readonly HttpClient _http = serve.Http;

    private string Url(string path) => serve.BaseUrl + path;

    /// <summary>Checks that <paramref name="entry"/> is in the backing store itself, not only in this process's view of it.</summary>
    protected abstract Task AssertPersistedAsync(TrafficEntry entry);

    private sealed record Answer(string Id, string Text, string? FinishReason, int PromptTokens, int CompletionTokens, double MeanLogprob, string? Arm,
        DateTimeOffset Before, DateTimeOffset After, JsonElement Json);

    private async Task<Answer> CompleteAsync(object body, string key, Action<HttpRequestMessage>? configure = null)
    {
        var request = Post(Url("/v1/completions"), body, key);
        configure?.Invoke(request);
        var before = DateTimeOffset.UtcNow;
        var (status, json, response) = await SendJsonAsync(_http, request);
        var after = DateTimeOffset.UtcNow;
        Assert.True(status == HttpStatusCode.OK, json.ToString());
        var choice = json.GetProperty("choices")[0];
        var usage = json.GetProperty("usage");
        double mean = MeanLogprob.Parse(response.Headers.GetValues(MeanLogprob.Header).Single())
            ?? throw new InvalidOperationException("The mean log-probability header is not a number.");
        return new Answer(json.GetProperty("id").GetString()!, choice.GetProperty("text").GetString()!, choice.GetProperty("finish_reason").GetString(),
            usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32(), mean,
            response.Headers.TryGetValues("X-TuneGateway-Arm", out var arm) ? arm.Single() : null, before, after, json);
    }

    private static void AssertTimings(TrafficEntry entry, Answer answer)
    {
        Assert.InRange(entry.Timestamp, answer.Before, answer.After);
        Assert.NotNull(entry.TimeToFirstTokenMs);
        Assert.True(entry.TimeToFirstTokenMs <= entry.LatencyMs, "the first token cannot come after the end");
        Assert.True(entry.LatencyMs > 0);
        Assert.False(string.IsNullOrEmpty(entry.RequestId));
    }

    [Fact]
    public async Task CompletionsThroughAnAliasWithTwoArmsAreLoggedWithEveryField()
    {
        await SetAliasAsync("support-bot", ("support-bot@v3", 1), ("support-bot@v4", 1));
        var byArm = new Dictionary<string, (string User, Answer Answer)>();
        for (int i = 0; i < 64 && byArm.Count < 2; i++)
        {
            string user = $"alias-user-{i}";
            var answer = await CompleteAsync(new { model = "support-bot", prompt = "Tell me about order 42", max_tokens = 3, temperature = 0, ignore_eos = true, user },
                TrafficServeFixture.AliceKey);
            byArm.TryAdd(answer.Arm!, (user, answer));
        }
        Assert.Equal(new[] { "support-bot@v3", "support-bot@v4" }, byArm.Keys.Order());

        foreach (var (arm, (user, answer)) in byArm)
        {
            var record = await serve.LoggedAsync(answer.Id);
            var entry = record.Entry;
            Assert.StartsWith("cmpl-", entry.Id, StringComparison.Ordinal);
            Assert.Equal(answer.Id, entry.Id);
            Assert.Equal("alice", entry.ApiKeyId);
            Assert.Equal(user, entry.User);
            Assert.Equal("support-bot", entry.RequestedModel);
            Assert.Equal("support-bot", entry.Adapter);
            Assert.Equal(arm[(arm.IndexOf('@') + 1)..], entry.AdapterVersion);
            Assert.Equal(arm, entry.Arm);
            Assert.Equal("Tell me about order 42", entry.Prompt);
            Assert.Equal(answer.Text, entry.Completion);
            Assert.Equal("length", entry.FinishReason);
            Assert.Equal(answer.PromptTokens, entry.PromptTokens);
            Assert.Equal(3, entry.CompletionTokens);
            Assert.Equal(answer.MeanLogprob, entry.MeanLogprob);
            Assert.Equal(200, entry.Status);
            Assert.Null(entry.Error);
            AssertTimings(entry, answer);
            Assert.Null(record.Feedback);
            await AssertPersistedAsync(entry);
        }

        // A versioned adapter called directly: its name and version, no arm.
        var direct = await CompleteAsync(new { model = "support-bot@v4", prompt = new[] { 1, 2, 3 }, max_tokens = 2, user = "direct-user" }, TrafficServeFixture.BobKey);
        var directEntry = (await serve.LoggedAsync(direct.Id)).Entry;
        Assert.Equal(("support-bot", "v4", (string?)null), (directEntry.Adapter, directEntry.AdapterVersion, directEntry.Arm));
        Assert.Equal("support-bot@v4", directEntry.RequestedModel);
        Assert.Equal("[1,2,3]", directEntry.Prompt); // token ids as the client sent them
        Assert.Equal("bob", directEntry.ApiKeyId);
        Assert.Equal(direct.Text, directEntry.Completion);

        // The base model: no adapter, logged under the base-model partition.
        var base_ = await CompleteAsync(new { model = "llama-tiny", prompt = new[] { "first", "second" }, max_tokens = 1 }, TrafficServeFixture.AliceKey);
        var baseEntry = (await serve.LoggedAsync(base_.Id)).Entry;
        Assert.Equal(((string?)null, (string?)null, (string?)null), (baseEntry.Adapter, baseEntry.AdapterVersion, baseEntry.Arm));
        Assert.Equal(TrafficEntry.NoAdapterStream, baseEntry.StreamName);
        Assert.Equal("""["first","second"]""", baseEntry.Prompt);
        Assert.Equal(base_.Text, baseEntry.Completion); // the first of several choices
        Assert.Null(baseEntry.User);
    }

    [Fact]
    public async Task TheMeanLogprobIsTheMeanOfTheGeneratedTokensLogprobs()
    {
        var answer = await CompleteAsync(new { model = "support-bot@v3", prompt = "Once upon a time", max_tokens = 6, ignore_eos = true, logprobs = 1, seed = 3 },
            TrafficServeFixture.AliceKey);
        var logprobs = answer.Json.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(6, logprobs.Length);
        Assert.Equal(logprobs.Average(), answer.MeanLogprob, 4);
        Assert.True(answer.MeanLogprob < 0);
        Assert.Equal(answer.MeanLogprob, (await serve.LoggedAsync(answer.Id)).Entry.MeanLogprob);
    }

    /// <summary>A streamed answer: its id, text, finish reason, usage (when asked for) and every data chunk.</summary>
    private sealed record Streamed(string Id, string Text, string? FinishReason, JsonElement? Usage, IReadOnlyList<JsonElement> Chunks, DateTimeOffset Before, DateTimeOffset After);

    private async Task<Streamed> StreamChatAsync(object body, string key)
    {
        var before = DateTimeOffset.UtcNow;
        using var response = await _http.SendAsync(Post(Url("/v1/chat/completions"), body, key), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.False(response.Headers.Contains(MeanLogprob.Header), "a stream reports the mean on its last chunk");
        string[] data = (await response.Content.ReadAsStringAsync()).Split('\n')
            .Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => l[6..]).ToArray();
        var after = DateTimeOffset.UtcNow;
        Assert.Equal("[DONE]", data[^1]);
        var chunks = data[..^1].Select(d => JsonDocument.Parse(d).RootElement.Clone()).ToArray();
        var text = new StringBuilder();
        string? finish = null;
        JsonElement? usage = null;
        foreach (var chunk in chunks)
        {
            foreach (var choice in chunk.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("delta").TryGetProperty("content", out var content)) text.Append(content.GetString());
                finish ??= choice.GetProperty("finish_reason").GetString();
            }
            if (chunk.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) usage = u;
        }
        return new Streamed(chunks[0].GetProperty("id").GetString()!, text.ToString(), finish, usage, chunks, before, after);
    }

    [Fact]
    public async Task StreamedChatsAreLoggedWithEveryField()
    {
        object[] messages =
        [
            new { role = "system", content = "Be brief." },
            new { role = "user", content = "Grüße! Say \"hi\"\nplease." },
        ];
        var streamed = await StreamChatAsync(new
        {
            model = "support-bot@v4", messages, max_tokens = 5, temperature = 0, ignore_eos = true, stream = true, user = "chat-user",
            stream_options = new { include_usage = true }, logprobs = true,
        }, TrafficServeFixture.BobKey);

        // Only the last chunk (here the usage chunk) carries the mean, and it is the mean of the streamed logprobs.
        var last = streamed.Chunks[^1];
        Assert.Equal(JsonValueKind.Object, last.GetProperty("usage").ValueKind);
        double mean = last.GetProperty(MeanLogprob.StreamField).GetDouble();
        Assert.All(streamed.Chunks.SkipLast(1), c => Assert.False(c.TryGetProperty(MeanLogprob.StreamField, out _)));
        var tokenLogprobs = streamed.Chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray())
            .Where(c => c.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            .SelectMany(c => c.GetProperty("logprobs").GetProperty("content").EnumerateArray()).Select(t => t.GetProperty("logprob").GetDouble()).ToArray();
        Assert.Equal(5, tokenLogprobs.Length);
        Assert.Equal(tokenLogprobs.Average(), mean, 4);

        var entry = (await serve.LoggedAsync(streamed.Id)).Entry;
        Assert.StartsWith("chatcmpl-", entry.Id, StringComparison.Ordinal);
        Assert.Equal("bob", entry.ApiKeyId);
        Assert.Equal("chat-user", entry.User);
        Assert.Equal("support-bot@v4", entry.RequestedModel);
        Assert.Equal(("support-bot", "v4", (string?)null), (entry.Adapter, entry.AdapterVersion, entry.Arm));
        // The messages as compact JSON, text unescaped where JSON allows.
        Assert.True(JsonNode.DeepEquals(JsonSerializer.SerializeToNode(messages), JsonNode.Parse(entry.Prompt!)), entry.Prompt);
        Assert.Contains("Grüße", entry.Prompt, StringComparison.Ordinal);
        Assert.DoesNotContain("\n", entry.Prompt, StringComparison.Ordinal);
        Assert.DoesNotContain(", ", entry.Prompt, StringComparison.Ordinal);
        Assert.Equal(streamed.Text, entry.Completion);
        Assert.False(string.IsNullOrEmpty(entry.Completion));
        Assert.Equal("length", entry.FinishReason);
        Assert.Equal(streamed.Usage!.Value.GetProperty("prompt_tokens").GetInt32(), entry.PromptTokens);
        Assert.Equal(5, entry.CompletionTokens);
        Assert.Equal(mean, entry.MeanLogprob);
        Assert.Equal(200, entry.Status);
        Assert.Null(entry.Error);
        Assert.InRange(entry.Timestamp, streamed.Before, streamed.After);
        Assert.NotNull(entry.TimeToFirstTokenMs);
        Assert.True(entry.TimeToFirstTokenMs <= entry.LatencyMs);
        await AssertPersistedAsync(entry);

        // Without usage the finishing chunk is the last one and carries the mean; the entry has no token counts.
        var plain = await StreamChatAsync(new { model = "llama-tiny", messages, max_tokens = 3, stream = true }, TrafficServeFixture.BobKey);
        Assert.Null(plain.Usage);
        Assert.Equal("length", plain.Chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        double plainMean = plain.Chunks[^1].GetProperty(MeanLogprob.StreamField).GetDouble();
        var plainEntry = (await serve.LoggedAsync(plain.Id)).Entry;
        Assert.Equal(plainMean, plainEntry.MeanLogprob);
        Assert.Equal(plain.Text, plainEntry.Completion);
        Assert.Null(plainEntry.CompletionTokens);
        Assert.Null(plainEntry.Adapter);
    }

    [Fact]
    public async Task ErrorAnswersAreLoggedUnderAGeneratedId()
    {
        string user = "error-user-" + Guid.NewGuid().ToString("N");
        var result = await SendJsonAsync(_http, Post(Url("/v1/completions"), new { model = "llama-tiny", prompt = "x", temperature = 3, user }, TrafficServeFixture.AliceKey));
        AssertError(HttpStatusCode.BadRequest, result, "temperature");

        TrafficRecord? record = null;
        await WaitUntilAsync(async () =>
        {
            var page = await serve.Reader.QueryAsync(new TrafficQuery { Adapter = TrafficEntry.NoAdapterStream, Limit = TrafficQuery.MaxLimit, Since = DateTimeOffset.UtcNow.AddMinutes(-10) });
            record = page.Items.LastOrDefault(r => r.Entry.User == user);
            return record is not null;
        }, "the error in the log");
        var entry = record!.Entry;
        Assert.StartsWith("err-", entry.Id, StringComparison.Ordinal);
        Assert.Equal(400, entry.Status);
        Assert.Contains("temperature", entry.Error, StringComparison.Ordinal);
        Assert.Null(entry.Completion);
        Assert.Null(entry.MeanLogprob);
        Assert.Equal("x", entry.Prompt);
        Assert.Equal("alice", entry.ApiKeyId);
    }

    [Fact]
    public async Task FeedbackIsCreatedUpdatedAndRefusedForUnknownOrOtherKeysIds()
    {
        var answer = await CompleteAsync(new { model = "support-bot@v3", prompt = "Rate me", max_tokens = 2 }, TrafficServeFixture.AliceKey);
        await serve.LoggedAsync(answer.Id);

        var (status, created, _) = await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 1 }, TrafficServeFixture.AliceKey));
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal("created", created.GetProperty("status").GetString());
        Assert.Equal(answer.Id, created.GetProperty("id").GetString());
        Assert.Equal(1, created.GetProperty("rating").GetInt32());
        Assert.False(created.TryGetProperty("stars", out _));
        Assert.Equal(1, created.GetProperty("score").GetDouble());

        var (again, updated, _) = await SendJsonAsync(_http, Post(Url("/v1/feedback"),
            new { id = answer.Id, stars = 4, correction = "The answer I wanted.", comment = "close" }, TrafficServeFixture.AliceKey));
        Assert.Equal(HttpStatusCode.OK, again);
        Assert.Equal("updated", updated.GetProperty("status").GetString());
        Assert.Equal(4, updated.GetProperty("stars").GetInt32());
        Assert.False(updated.TryGetProperty("rating", out _));
        Assert.Equal(0.5, updated.GetProperty("score").GetDouble());
        Assert.Equal(created.GetProperty("created_at").GetDateTimeOffset(), updated.GetProperty("created_at").GetDateTimeOffset());

        // Stored once, linked to the request, holding the latest rating.
        var record = await serve.Reader.GetAsync(answer.Id);
        Assert.NotNull(record?.Feedback);
        Assert.Equal((4, RatingScale.Stars, "The answer I wanted.", "close", "alice"),
            (record.Feedback.Rating, record.Feedback.Scale, record.Feedback.Correction, record.Feedback.Comment, record.Feedback.ApiKeyId));
        var page = await serve.Reader.QueryAsync(new TrafficQuery { Adapter = "support-bot", Since = answer.Before.AddSeconds(-1), Limit = TrafficQuery.MaxLimit });
        Assert.Single(page.Items, r => r.Entry.Id == answer.Id);

        // One star is the worst rating; rating 1 is always a thumbs up.
        var (_, oneStar, _) = await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, stars = 1 }, TrafficServeFixture.AliceKey));
        Assert.Equal((1, -1.0), (oneStar.GetProperty("stars").GetInt32(), oneStar.GetProperty("score").GetDouble()));
        var (_, neutral, _) = await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 0 }, TrafficServeFixture.AliceKey));
        Assert.Equal((0, 0.0), (neutral.GetProperty("rating").GetInt32(), neutral.GetProperty("score").GetDouble()));
        Assert.Equal(HttpStatusCode.OK, (await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 1 }, TrafficServeFixture.AliceKey))).Status);

        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = "cmpl-" + Guid.NewGuid().ToString("N"), rating = 1 }, TrafficServeFixture.AliceKey)), "id", "not_found");
        // Another key's request is unknown to this key (ids cannot be probed), and its feedback is left alone.
        AssertError(HttpStatusCode.NotFound, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = -1 }, TrafficServeFixture.BobKey)), "id", "not_found");
        Assert.Equal(1, (await serve.Reader.GetAsync(answer.Id))!.Feedback!.Rating);

        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 7 }, TrafficServeFixture.AliceKey)), "rating");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = "great" }, TrafficServeFixture.AliceKey)), "rating");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 1, scale = "moons" }, TrafficServeFixture.AliceKey)), "scale");
        // The ambiguous forms are refused, naming the field: no silent guess on what "4" or "1" meant.
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 4 }, TrafficServeFixture.AliceKey)), "rating");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 1, scale = "stars" }, TrafficServeFixture.AliceKey)), "scale");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 1, stars = 5 }, TrafficServeFixture.AliceKey)), "stars");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, comment = "no rating" }, TrafficServeFixture.AliceKey)), "rating");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, stars = 0 }, TrafficServeFixture.AliceKey)), "stars");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, stars = 6 }, TrafficServeFixture.AliceKey)), "stars");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = -2 }, TrafficServeFixture.AliceKey)), "rating");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { rating = 1 }, TrafficServeFixture.AliceKey)), "id");
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(_http, Post(Url("/v1/feedback"), "{not json", TrafficServeFixture.AliceKey)), "body");
        AssertError(HttpStatusCode.Unauthorized, await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = answer.Id, rating = 1 })), null, "missing_api_key");
    }

    [Fact]
    public async Task OneStarTrainsAsNegativeAndFiveStarsAsPositive()
    {
        // Unique prompts: other tests of this fixture log support-bot traffic too.
        string tag = Guid.NewGuid().ToString("N")[..8];
        var oneStar = await CompleteAsync(new { model = "support-bot@v3", prompt = $"one star {tag}", max_tokens = 2 }, TrafficServeFixture.AliceKey);
        var fiveStars = await CompleteAsync(new { model = "support-bot@v3", prompt = $"five stars {tag}", max_tokens = 2 }, TrafficServeFixture.AliceKey);
        var thumbsUp = await CompleteAsync(new { model = "support-bot@v3", prompt = $"thumbs up {tag}", max_tokens = 2 }, TrafficServeFixture.AliceKey);
        foreach (var answer in new[] { oneStar, fiveStars, thumbsUp }) await serve.LoggedAsync(answer.Id);
        Assert.Equal(HttpStatusCode.Created, (await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = oneStar.Id, stars = 1 }, TrafficServeFixture.AliceKey))).Status);
        Assert.Equal(HttpStatusCode.Created, (await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = fiveStars.Id, stars = 5 }, TrafficServeFixture.AliceKey))).Status);
        Assert.Equal(HttpStatusCode.Created, (await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = thumbsUp.Id, rating = 1 }, TrafficServeFixture.AliceKey))).Status);

        Assert.Equal((RatingScale.Stars, 1, -1.0), Stored(await serve.Reader.GetAsync(oneStar.Id)));
        Assert.Equal((RatingScale.Stars, 5, 1.0), Stored(await serve.Reader.GetAsync(fiveStars.Id)));
        Assert.Equal((RatingScale.Thumbs, 1, 1.0), Stored(await serve.Reader.GetAsync(thumbsUp.Id)));

        // Curation over the real log: the default min_score keeps the five-star and thumbs-up answers only.
        var pipeline = new TuneGateway.Controller.Pipelines.PipelineDefinition { Adapter = "support-bot", Data = new TuneGateway.Controller.Pipelines.DataRules { MinExamples = 1, Window = TimeSpan.FromHours(1) } };
        var data = await new TuneGateway.Controller.Pipelines.Curator(serve.Reader).CurateAsync(pipeline, [], DateTimeOffset.UtcNow.AddSeconds(1));
        var prompts = data.Train.Concat(data.Validation).Concat(data.Holdout).Select(e => e.Prompt).Where(p => p.EndsWith(tag, StringComparison.Ordinal)).Order().ToArray();
        Assert.Equal([$"five stars {tag}", $"thumbs up {tag}"], prompts);

        static (RatingScale, int, double) Stored(TrafficRecord? record) => (record!.Feedback!.Scale, record.Feedback.Rating, record.Feedback.Score);
    }

    [Fact]
    public async Task TheAdminTrafficApiPagesThroughAnAdaptersLog()
    {
        var since = DateTimeOffset.UtcNow.AddSeconds(-1);
        var ids = new List<string>();
        for (int i = 0; i < 5; i++)
            ids.Add((await CompleteAsync(new { model = "pager", prompt = $"page {i}", max_tokens = 1 }, TrafficServeFixture.AliceKey)).Id);
        foreach (string id in ids) await serve.LoggedAsync(id);
        Assert.Equal(HttpStatusCode.Created, (await SendJsonAsync(_http, Post(Url("/v1/feedback"), new { id = ids[2], rating = -1 }, TrafficServeFixture.AliceKey))).Status);

        string Query(string query) => Url("/admin/traffic?" + query);
        async Task<JsonElement> GetAsync(string url, string key = TrafficServeFixture.MlopsKey)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.Authorization = new("Bearer", key);
            var (status, body, _) = await SendJsonAsync(_http, request);
            Assert.True(status == HttpStatusCode.OK, body.ToString());
            return body;
        }

        var items = new List<JsonElement>();
        var sizes = new List<int>();
        string sinceText = Uri.EscapeDataString(since.ToString("O", CultureInfo.InvariantCulture));
        string? cursor = null;
        do
        {
            var page = await GetAsync(Query($"adapter=pager&since={sinceText}&limit=2" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor))));
            var data = page.GetProperty("data").EnumerateArray().ToArray();
            sizes.Add(data.Length);
            items.AddRange(data);
            cursor = page.GetProperty("next_cursor").GetString();
        }
        while (cursor is not null && sizes.Count < 10);
        Assert.Equal([2, 2, 1], sizes);
        Assert.Equal(ids.Order(), items.Select(i => i.GetProperty("entry").GetProperty("id").GetString()!).Order());
        var positions = items.Select(i => LogPosition.Parse(i.GetProperty("position").GetString()!)).ToArray();
        Assert.Equal(positions.Order(), positions);
        Assert.Equal(positions.Length, positions.Distinct().Count());
        var rated = items.Single(i => i.GetProperty("entry").GetProperty("id").GetString() == ids[2]);
        Assert.Equal(-1, rated.GetProperty("feedback").GetProperty("rating").GetInt32());
        Assert.Equal("pager", rated.GetProperty("entry").GetProperty("adapter").GetString());
        Assert.Equal("page 2", rated.GetProperty("entry").GetProperty("prompt").GetString());
        Assert.Equal(JsonValueKind.Null, items.First(i => i.GetProperty("entry").GetProperty("id").GetString() == ids[0]).GetProperty("feedback").ValueKind);

        // The window: from the third entry's time on, and nothing before the first.
        var third = positions[2];
        var window = await GetAsync(Query($"adapter=pager&since={Uri.EscapeDataString(third.Time.ToString("O", CultureInfo.InvariantCulture))}&limit=1000"));
        Assert.Equal(positions.Where(p => p.Milliseconds >= third.Milliseconds).Select(p => p.ToString()),
            window.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("position").GetString()));
        var before = await GetAsync(Query($"adapter=pager&since={sinceText}&until={Uri.EscapeDataString(positions[0].Time.ToString("O", CultureInfo.InvariantCulture))}"));
        Assert.Empty(before.GetProperty("data").EnumerateArray());
        Assert.Equal(JsonValueKind.Null, before.GetProperty("next_cursor").ValueKind);
        Assert.Equal(5, (await GetAsync(Query($"adapter=pager&since={sinceText}"), TrafficServeFixture.AdminKey)).GetProperty("data").GetArrayLength());

        async Task<(HttpStatusCode, JsonElement, HttpResponseMessage)> RawAsync(string url, string? key = TrafficServeFixture.MlopsKey)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, url);
            if (key is not null) request.Headers.Authorization = new("Bearer", key);
            return await SendJsonAsync(_http, request);
        }
        AssertError(HttpStatusCode.Forbidden, await RawAsync(Query("adapter=pager"), TrafficServeFixture.AliceKey), null, "insufficient_permissions");
        AssertError(HttpStatusCode.Unauthorized, await RawAsync(Query("adapter=pager"), null), null);
        AssertError(HttpStatusCode.BadRequest, await RawAsync(Query("adapter=pager&cursor=abc")), "cursor");
        AssertError(HttpStatusCode.BadRequest, await RawAsync(Query("adapter=pager&since=yesterday")), "since");
        AssertError(HttpStatusCode.BadRequest, await RawAsync(Query("adapter=pager&until=soon")), "until");
        AssertError(HttpStatusCode.BadRequest, await RawAsync(Query("adapter=pager&limit=ten")), "limit");
        AssertError(HttpStatusCode.BadRequest, await RawAsync(Query("adapter=pager&limit=0")), "limit");
        AssertError(HttpStatusCode.BadRequest, await RawAsync(Query("limit=5")), "adapter");
    }

    [Fact]
    public async Task EvaluationRequestsOfPrivilegedKeysAreNotLogged()
    {
        static void Evaluation(HttpRequestMessage request) => request.Headers.Add(GatewayProxyMiddleware.EvaluationHeader, "true");
        object Body() => new { model = "support-bot@v3", prompt = "Evaluate me", max_tokens = 1 };
        var byMlops = await CompleteAsync(Body(), TrafficServeFixture.MlopsKey, Evaluation);
        var byAdmin = await CompleteAsync(Body(), TrafficServeFixture.AdminKey, Evaluation);
        var byInference = await CompleteAsync(Body(), TrafficServeFixture.AliceKey, Evaluation); // the header needs a privileged key
        var ordinary = await CompleteAsync(Body(), TrafficServeFixture.MlopsKey);

        // The recording observer runs after the traffic log's: once it has seen an exchange, the log has too.
        string[] all = [byMlops.Id, byAdmin.Id, byInference.Id, ordinary.Id];
        await WaitUntilAsync(() => Task.FromResult(all.All(id => serve.Observer.Exchanges.Any(e => e.ResponseId == id))), "the observer to see every exchange");
        Assert.True(serve.Observer.Exchanges.Single(e => e.ResponseId == byMlops.Id).Evaluation);
        Assert.Equal("alice", (await serve.LoggedAsync(byInference.Id)).Entry.ApiKeyId);
        Assert.Equal("mlops", (await serve.LoggedAsync(ordinary.Id)).Entry.ApiKeyId);
        foreach (string id in new[] { byMlops.Id, byAdmin.Id })
        {
            Assert.False(serve.Log.IsPending(id));
            Assert.Null(await serve.Reader.GetAsync(id));
        }
    }

    [Fact]
    public async Task TheWritersCountersAreExportedAsMetrics()
    {
        var answer = await CompleteAsync(new { model = "llama-tiny", prompt = "count me", max_tokens = 1 }, TrafficServeFixture.AliceKey);
        await serve.LoggedAsync(answer.Id);
        string metrics = await _http.GetStringAsync(Url("/metrics"));
        // Other hosts in this test process have writers too (the listener sees every meter of the name): some series counts this entry.
        var written = metrics.Split('\n').Where(l => l.StartsWith("tunegw_traffic_written_total{", StringComparison.Ordinal)).ToArray();
        Assert.Contains(written, line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture) >= 1);
        Assert.Contains("tunegw_traffic_backlog{", metrics, StringComparison.Ordinal);
        Assert.Contains("tunegw_traffic_dropped_total{", metrics, StringComparison.Ordinal);
    }

    private async Task SetAliasAsync(string name, params (string Model, double Weight)[] versions)
    {
        var request = new HttpRequestMessage(HttpMethod.Put, Url("/admin/aliases/" + name))
        {
            Content = new StringContent(JsonSerializer.Serialize(new { versions = versions.Select(v => new { model = v.Model, weight = v.Weight }) }), Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new("Bearer", TrafficServeFixture.MlopsKey);
        var (status, body, _) = await SendJsonAsync(_http, request);
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        await WaitUntilAsync(async () => (await CompleteAsync(new { model = name, prompt = "x", max_tokens = 1 }, TrafficServeFixture.AdminKey)).Arm is not null, "the alias to route");
    }
}

/// <summary><c>serve --redis</c>: the log and feedback in a real redis-server.</summary>
public sealed class RedisTrafficLogServeTests(RedisTrafficServeFixture serve) : TrafficLogServeTests(serve), IClassFixture<RedisTrafficServeFixture>
{
    protected override async Task AssertPersistedAsync(TrafficEntry entry)
    {
        // A separate connection and store over the same keys: the entry is in Redis, as stored.
        await using var connection = await RedisConnection.ConnectAsync(serve.Redis.ConnectionString);
        var store = new RedisTrafficStore(connection, Options.Create(new TrafficLogOptions { KeyPrefix = serve.KeyPrefix }));
        Assert.Equal(entry, (await store.GetAsync(entry.Id))?.Entry);
    }
}

/// <summary><c>serve</c> without Redis: the same behaviour from the embedded store.</summary>
public sealed class EmbeddedTrafficLogServeTests(EmbeddedTrafficServeFixture serve) : TrafficLogServeTests(serve), IClassFixture<EmbeddedTrafficServeFixture>
{
    protected override Task AssertPersistedAsync(TrafficEntry entry)
    {
        // The store fsyncs each append: the entry's line is in a segment file under the data directory.
        string logs = Path.Combine(serve.DataDirectory, "traffic", "logs");
        bool found = Directory.EnumerateFiles(logs, "*.jsonl", SearchOption.AllDirectories).Any(file => File.ReadAllText(file).Contains($"\"id\":\"{entry.Id}\"", StringComparison.Ordinal));
        Assert.True(found, $"'{entry.Id}' is in no segment under {logs}");
        return Task.CompletedTask;
    }
}
