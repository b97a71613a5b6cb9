#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental by the client.
using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using TuneGateway.Tests.Tokenization;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// The sampling parameters through <c>serve</c> (gateway and in-process worker on the tiny model),
/// sent with the official OpenAI client where it has them and as raw JSON for the rest: each is
/// shown to act, and the penalties to act by their formula, checked against the raw
/// log-probabilities the server reports (which are those of the unprocessed distribution).
/// </summary>
public sealed class SamplingParameterTests(ServeFixture serve) : IClassFixture<ServeFixture>
{
    private const string Model = "llama-tiny";
    private static readonly ChatMessage[] Conversation = [new UserChatMessage("Hello")];

    private ChatClient Chat(string model = Model) =>
        new(model, new ApiKeyCredential(ServeFixture.InferenceKey), new OpenAIClientOptions { Endpoint = new Uri(serve.BaseUrl + "/v1") });

    private static ChatCompletionOptions Greedy(int maxTokens = 16) => new() { MaxOutputTokenCount = maxTokens, Temperature = 0 };

    private async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> PostAsync(string path, object body) =>
        await SendJsonAsync(serve.Http, Post(serve.BaseUrl + path, body is JsonNode node ? node.ToJsonString() : body, ServeFixture.InferenceKey));

    private async Task<JsonElement> OkAsync(string path, object body)
    {
        var result = await PostAsync(path, body);
        Assert.True(result.Status == HttpStatusCode.OK, $"{result.Status} {result.Body}");
        return result.Body;
    }

    private static int[] Ints(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    [Fact]
    public async Task LogitBiasOfPlusHundredForcesItsTokenAndMinusHundredBansIt()
    {
        var plain = await Chat().CompleteChatAsync(Conversation, Greedy(6));
        string first = plain.Value.Content[0].Text;
        Assert.False(string.IsNullOrEmpty(first));

        var ids = Ints((await OkAsync("/tokenize", new { model = Model, prompt = "o", add_special_tokens = false })).GetProperty("tokens"));
        int forced = Assert.Single(ids);
        var options = Greedy(6);
        options.LogitBiases[forced] = 100;
        var biased = await Chat().CompleteChatAsync(Conversation, options);
        Assert.Equal("oooooo", biased.Value.Content[0].Text);

        // The first greedy token at -100 is never picked: the output begins otherwise.
        options = Greedy(6);
        options.IncludeLogProbabilities = true;
        var firstToken = (await Chat().CompleteChatAsync(Conversation, options)).Value.ContentTokenLogProbabilities[0].Token;
        int firstId = Ints((await OkAsync("/tokenize", new { model = Model, prompt = firstToken, add_special_tokens = false })).GetProperty("tokens"))[0];
        options.LogitBiases[firstId] = -100;
        var banned = (await Chat().CompleteChatAsync(Conversation, options)).Value;
        Assert.NotEqual(firstToken, banned.ContentTokenLogProbabilities[0].Token);
    }

    public static TheoryData<float, float> Penalties() => new() { { 0.8f, 0f }, { 0f, 1.5f }, { 0.6f, 0.7f } };

    [Theory]
    [MemberData(nameof(Penalties))]
    public async Task FrequencyAndPresencePenaltiesChangeARepetitiveGreedyOutputByOpenAisFormula(float frequency, float presence)
    {
        var options = Greedy(24);
        options.IncludeLogProbabilities = true;
        options.TopLogProbabilityCount = 20;
        var plain = (await Chat().CompleteChatAsync(Conversation, options)).Value;
        var plainTokens = plain.ContentTokenLogProbabilities.Select(t => t.Token).ToArray();
        Assert.True(plainTokens.Distinct().Count() < plainTokens.Length, "the greedy output is expected to repeat itself");

        options.FrequencyPenalty = frequency;
        options.PresencePenalty = presence;
        var penalized = (await Chat().CompleteChatAsync(Conversation, options)).Value;
        var steps = penalized.ContentTokenLogProbabilities;
        Assert.NotEqual(plainTokens, steps.Select(t => t.Token).ToArray());

        // At every step the pick maximises raw logprob − frequency·count − presence·[count > 0] over the
        // alternatives the server reports (logits and logprobs differ by a constant per step, which the
        // subtraction does not change), counting the tokens generated before that step.
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        double Adjusted(string token, float logprob)
        {
            int count = counts.GetValueOrDefault(token);
            return logprob - frequency * count - presence * (count > 0 ? 1 : 0);
        }
        foreach (var step in steps)
        {
            double chosen = Adjusted(step.Token, step.LogProbability);
            foreach (var alternative in step.TopLogProbabilities)
                Assert.True(chosen >= Adjusted(alternative.Token, alternative.LogProbability) - 1e-4,
                    $"'{step.Token}' ({chosen:F4}) was picked over '{alternative.Token}' ({Adjusted(alternative.Token, alternative.LogProbability):F4})");
            counts[step.Token] = counts.GetValueOrDefault(step.Token) + 1;
        }
    }

    [Fact]
    public async Task TheSameSeedGivesTheSameTextAloneAndInABusyBatch()
    {
        ChatCompletionOptions Sampled(long seed) => new() { MaxOutputTokenCount = 16, Temperature = 1, Seed = seed };
        string alone = (await Chat().CompleteChatAsync(Conversation, Sampled(11))).Value.Content[0].Text;
        Assert.NotEqual(alone, (await Chat().CompleteChatAsync(Conversation, Sampled(12))).Value.Content[0].Text);

        // The same request again while others with other settings run beside it (greedy, other seeds, penalties, bias).
        var neighbours = Enumerable.Range(0, 6).Select(i =>
        {
            var options = Sampled(100 + i);
            if (i % 2 == 0) options.Temperature = 0;
            options.FrequencyPenalty = i * 0.3f;
            options.LogitBiases[7 + i] = 5;
            return Chat().CompleteChatAsync([new UserChatMessage($"Tell me about {i}")], options);
        }).ToArray();
        var again = Chat().CompleteChatAsync(Conversation, Sampled(11));
        await Task.WhenAll(neighbours.Append(again));
        Assert.Equal(alone, (await again).Value.Content[0].Text);
    }

    private static JsonObject Completion(int maxTokens = 12) => new()
    {
        ["model"] = Model, ["prompt"] = "Once upon a time", ["max_tokens"] = maxTokens, ["temperature"] = 1, ["seed"] = 3, ["logprobs"] = 0,
        ["ignore_eos"] = true,
    };

    [Fact]
    public async Task BestOfReturnsTheCandidatesWithTheHighestCumulativeLogprob()
    {
        // The same five candidates (best_of offsets the seed per candidate as n does), all returned...
        var all = Completion();
        all["n"] = 5;
        var candidates = (await OkAsync("/v1/completions", all)).GetProperty("choices").EnumerateArray()
            .Select(c => (Text: c.GetProperty("text").GetString()!, Sum: c.GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Sum(l => l.GetDouble())))
            .ToArray();
        Assert.True(candidates.Select(c => c.Text).Distinct().Count() > 2, "sampled candidates should differ");
        var expected = candidates.OrderByDescending(c => c.Sum).Take(2).Select(c => c.Text).ToArray();

        // ...and best_of 5 with n 2 keeps the two most likely, most likely first.
        var best = Completion();
        best["n"] = 2;
        best["best_of"] = 5;
        var answer = await OkAsync("/v1/completions", best);
        var choices = answer.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(expected, choices.Select(c => c.GetProperty("text").GetString()!).ToArray());
        Assert.Equal([0, 1], choices.Select(c => c.GetProperty("index").GetInt32()).ToArray());
    }

    [Fact]
    public async Task BestOfIsRefusedWithStreamingAndBelowN()
    {
        var streamed = Completion();
        streamed["best_of"] = 3;
        streamed["stream"] = true;
        AssertError(HttpStatusCode.BadRequest, await PostAsync("/v1/completions", streamed), "best_of");
        var fewer = Completion();
        fewer["n"] = 3;
        fewer["best_of"] = 2;
        AssertError(HttpStatusCode.BadRequest, await PostAsync("/v1/completions", fewer), "best_of");
    }

    [Fact]
    public async Task EchoPutsThePromptBeforeTheCompletionStreamedOrNot()
    {
        var plain = Completion();
        plain.Remove("logprobs");
        string completion = (await OkAsync("/v1/completions", plain)).GetProperty("choices")[0].GetProperty("text").GetString()!;
        var echo = plain.DeepClone().AsObject();
        echo["echo"] = true;
        string echoed = (await OkAsync("/v1/completions", echo)).GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.Equal("Once upon a time" + completion, echoed);

        echo["stream"] = true;
        var (text, _, _) = await StreamCompletionAsync(echo);
        Assert.Equal(echoed, text);
    }

    [Fact]
    public async Task EchoWithLogprobsScoresThePromptTokensFirstOneNull()
    {
        var body = new JsonObject
        {
            ["model"] = Model, ["prompt"] = "Once upon a time", ["max_tokens"] = 4, ["temperature"] = 0, ["logprobs"] = 2, ["echo"] = true,
            ["return_token_ids"] = true,
        };
        var answer = await OkAsync("/v1/completions", body);
        int[] promptIds = Ints(answer.GetProperty("prompt_token_ids"));
        var logprobs = answer.GetProperty("choices")[0].GetProperty("logprobs");
        var tokenLogprobs = logprobs.GetProperty("token_logprobs").EnumerateArray().ToArray();
        var top = logprobs.GetProperty("top_logprobs").EnumerateArray().ToArray();
        Assert.Equal(promptIds.Length + 4, logprobs.GetProperty("tokens").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, tokenLogprobs[0].ValueKind);
        Assert.Equal(JsonValueKind.Null, top[0].ValueKind);
        Assert.All(top[1..], t => Assert.InRange(t.EnumerateObject().Count(), 1, 2));

        // Prompt token i scores as it would if generated after tokens 0..i-1: forced there with a +100
        // bias, its reported (raw) log-probability is the same number.
        for (int i = 1; i < promptIds.Length; i++)
        {
            var forced = new JsonObject
            {
                ["model"] = Model, ["prompt"] = new JsonArray(promptIds[..i].Select(id => (JsonNode)id).ToArray()), ["max_tokens"] = 1, ["temperature"] = 0,
                ["logprobs"] = 0, ["logit_bias"] = new JsonObject { [promptIds[i].ToString(System.Globalization.CultureInfo.InvariantCulture)] = 100 },
            };
            double expected = (await OkAsync("/v1/completions", forced)).GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs")[0].GetDouble();
            Assert.True(Math.Abs(expected - tokenLogprobs[i].GetDouble()) < 1e-3, $"prompt token {i}: {tokenLogprobs[i]} scored, {expected} generated");
        }

        // Streamed: the prompt's chunk first, then the tokens; the same tokens and numbers.
        body["stream"] = true;
        var (text, chunks, _) = await StreamCompletionAsync(body);
        Assert.Equal(answer.GetProperty("choices")[0].GetProperty("text").GetString(), text);
        var streamedTokens = chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray())
            .Where(c => c.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            .SelectMany(c => c.GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Select(l => l.ValueKind == JsonValueKind.Null ? (double?)null : l.GetDouble()))
            .ToArray();
        Assert.Equal(tokenLogprobs.Select(l => l.ValueKind == JsonValueKind.Null ? (double?)null : l.GetDouble()), streamedTokens);
    }

    [Fact]
    public async Task StreamedDeltasReassembleTheAnswerWithTheUsageChunkLast()
    {
        // Sampled, with every processor on, through the OpenAI client: the stream and the answer agree.
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 20, Temperature = 0.9f, Seed = 5, FrequencyPenalty = 0.4f, PresencePenalty = 0.3f, TopP = 0.95f };
        options.LogitBiases[9] = 3;
        var answer = (await Chat("shout").CompleteChatAsync(Conversation, options)).Value;
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (var update in Chat("shout").CompleteChatStreamingAsync(Conversation, options))
        {
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            usage ??= update.Usage;
        }
        Assert.Equal(answer.Content[0].Text, text.ToString());
        Assert.NotNull(usage);
        Assert.Equal(answer.Usage.OutputTokenCount, usage!.OutputTokenCount);
        Assert.Equal(answer.Usage.InputTokenCount, usage.InputTokenCount);

        // Raw: with include_usage the last data chunk before [DONE] has no choices and the usage.
        var body = Completion();
        body["stream"] = true;
        body["stream_options"] = new JsonObject { ["include_usage"] = true };
        var (_, chunks, _) = await StreamCompletionAsync(body);
        var last = chunks[^1];
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        Assert.Equal(12, last.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.All(chunks[..^1], c => Assert.False(c.TryGetProperty("usage", out var u) && u.ValueKind != JsonValueKind.Null));
    }

    /// <summary>A streamed completion: the text of its chunks joined, the chunks, and the raw lines.</summary>
    private async Task<(string Text, JsonElement[] Chunks, string[] Lines)> StreamCompletionAsync(JsonObject body)
    {
        using var response = await serve.Http.SendAsync(Post(serve.BaseUrl + "/v1/completions", body.ToJsonString(), ServeFixture.InferenceKey), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => l[6..]).ToArray();
        Assert.Equal("[DONE]", lines[^1]);
        var chunks = lines[..^1].Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToArray();
        string text = string.Concat(chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray()).Select(c => c.GetProperty("text").GetString()));
        return (text, chunks, lines);
    }

    [Fact]
    public async Task MaxCompletionTokensAndMaxTokensMustAgree()
    {
        var chat = new JsonObject
        {
            ["model"] = Model, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hello" }), ["temperature"] = 0,
            ["max_completion_tokens"] = 3, ["max_tokens"] = 3, ["ignore_eos"] = true,
        };
        Assert.Equal(3, (await OkAsync("/v1/chat/completions", chat)).GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        chat["max_tokens"] = 5;
        AssertError(HttpStatusCode.BadRequest, await PostAsync("/v1/chat/completions", chat), "max_completion_tokens");
    }

    [Fact]
    public async Task TopLogprobsGoUpToTwenty()
    {
        var options = Greedy(3);
        options.IncludeLogProbabilities = true;
        options.TopLogProbabilityCount = 20;
        var chat = (await Chat().CompleteChatAsync(Conversation, options)).Value;
        Assert.All(chat.ContentTokenLogProbabilities, t => Assert.Equal(20, t.TopLogProbabilities.Count));
        var completion = Completion(3);
        completion["logprobs"] = 20;
        var top = (await OkAsync("/v1/completions", completion)).GetProperty("choices")[0].GetProperty("logprobs").GetProperty("top_logprobs");
        // Keyed by token text: distinct ids with the same text collapse, so at most 20.
        Assert.All(top.EnumerateArray(), t => Assert.InRange(t.EnumerateObject().Count(), 15, 20));
        completion["logprobs"] = 21;
        AssertError(HttpStatusCode.BadRequest, await PostAsync("/v1/completions", completion), "logprobs");
    }

    [Fact]
    public async Task TokenizeAndDetokenizeMatchTheHuggingFaceTokenizerThroughTheGateway()
    {
        foreach (var sample in TokenizerFixtures.LlamaTinySamples())
        {
            // An adapter's name resolves to the base model's tokenizer.
            foreach (string model in new[] { Model, "shout" })
            {
                var tokenized = await OkAsync("/tokenize", new { model, prompt = sample.Text, add_special_tokens = false });
                Assert.Equal(sample.Ids, Ints(tokenized.GetProperty("tokens")));
                Assert.Equal(sample.Ids.Length, tokenized.GetProperty("count").GetInt32());
                Assert.True(tokenized.GetProperty("max_model_len").GetInt32() > 0);
            }
            var detokenized = await OkAsync("/detokenize", new { model = Model, tokens = sample.Ids });
            Assert.Equal(sample.Decoded, detokenized.GetProperty("prompt").GetString());
        }
    }

    [Fact]
    public async Task TokenizeMessagesCountsWhatTheChatCompletionPrompts()
    {
        var messages = new[] { new { role = "system", content = "Be brief." }, new { role = "user", content = "Hello" } };
        var tokenized = await OkAsync("/tokenize", new { model = Model, messages, add_generation_prompt = true });
        var chat = await OkAsync("/v1/chat/completions", new { model = Model, messages, max_tokens = 1 });
        Assert.Equal(chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), tokenized.GetProperty("count").GetInt32());
        var without = await OkAsync("/tokenize", new { model = Model, messages, add_generation_prompt = false });
        Assert.True(without.GetProperty("count").GetInt32() < tokenized.GetProperty("count").GetInt32());
    }

    [Fact]
    public async Task TokenizerEndpointsCheckKeysModelsAndIdsAndStayOutOfTheTrafficLog()
    {
        var anonymous = await SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/tokenize", new { model = Model, prompt = "hi" }));
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.Status);
        var shoutOnly = await SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/tokenize", new { model = Model, prompt = "hi" }, ServeFixture.ShoutOnlyKey));
        Assert.Equal(HttpStatusCode.Forbidden, shoutOnly.Status);
        AssertError(HttpStatusCode.NotFound, await PostAsync("/detokenize", new { model = "no-such-adapter", tokens = new[] { 1 } }), "model");
        AssertError(HttpStatusCode.BadRequest, await PostAsync("/detokenize", new { model = Model, tokens = new[] { 1, 1 << 20 } }), "tokens");
        AssertError(HttpStatusCode.BadRequest, await PostAsync("/tokenize", new { model = Model, prompt = "hi", max_tokens = 3 }), "max_tokens");
        Assert.DoesNotContain(serve.Observer.Exchanges, e => e.Path.EndsWith("tokenize", StringComparison.Ordinal));
    }
}
