using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using TuneGateway.Worker;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// Every request parameter of the two generation endpoints is honoured or refused with a 400
/// naming it; the honoured vLLM extras have their effect (greedy decoding on the tiny model is
/// deterministic, so each is compared with the same request without it).
/// </summary>
public sealed class RequestParameterTests(ServeFixture serve) : IClassFixture<ServeFixture>
{
    private const string Model = "llama-tiny";

    /// <summary>
    /// A valid, non-default value for every parameter an endpoint accepts. Adding a parameter to an
    /// endpoint fails <see cref="EveryAcceptedParameterIsListedAndAnswered"/> until it is listed here
    /// (and given a test of what it does).
    /// </summary>
    private static readonly Dictionary<string, string> Samples = new()
    {
        ["model"] = "\"llama-tiny\"", ["prompt"] = "\"Hello\"", ["messages"] = "[{\"role\":\"user\",\"content\":\"Hello\"}]",
        ["max_tokens"] = "3", ["max_completion_tokens"] = "3", ["n"] = "2", ["presence_penalty"] = "0.5", ["frequency_penalty"] = "0.5",
        ["logit_bias"] = "{\"5\": 1.5}", ["user"] = "\"alice\"", ["stop"] = "[\"zzz\"]", ["stream"] = "false", ["stream_options"] = "{\"include_usage\":true}",
        ["top_k"] = "5", ["temperature"] = "0.7", ["top_p"] = "0.9", ["seed"] = "3", ["stop_token_ids"] = "[1]", ["ignore_eos"] = "true",
        ["return_token_ids"] = "true", ["min_p"] = "0.1", ["repetition_penalty"] = "1.3", ["min_tokens"] = "2",
        ["include_stop_str_in_output"] = "true", ["truncate_prompt_tokens"] = "2", ["response_format"] = "{\"type\":\"text\"}",
        ["logprobs"] = "2", ["echo"] = "true", ["suffix"] = "\"\"", ["best_of"] = "2", ["tools"] = "[]", ["tool_choice"] = "\"none\"", ["parallel_tool_calls"] = "true", ["top_logprobs"] = "2",
        ["chat_template_kwargs"] = "{}", ["add_generation_prompt"] = "true",
    };

    private string Url(string path) => serve.BaseUrl + path;

    private async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> SendAsync(string path, JsonObject body) =>
        await SendJsonAsync(serve.Http, Post(Url(path), body.ToJsonString(), ServeFixture.AdminKey));

    private static JsonObject Completion(string prompt = "Hello", int maxTokens = 8) =>
        new() { ["model"] = Model, ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = 0, ["return_token_ids"] = true };

    private static JsonObject Chat(int maxTokens = 8) =>
        new() { ["model"] = Model, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hello" }), ["max_tokens"] = maxTokens, ["temperature"] = 0 };

    private static JsonObject With(JsonObject body, string key, string json)
    {
        var copy = body.DeepClone().AsObject();
        copy[key] = JsonNode.Parse(json);
        return copy;
    }

    private async Task<JsonElement> OkAsync(string path, JsonObject body)
    {
        var result = await SendAsync(path, body);
        Assert.True(result.Status == HttpStatusCode.OK, $"{body.ToJsonString()}: {result.Status} {result.Body}");
        return result.Body.GetProperty("choices")[0];
    }

    public static TheoryData<string> Endpoints() => ["/v1/completions", "/v1/chat/completions"];

    [Fact]
    public void TheAcceptedParametersAreTheseAndNoOthers()
    {
        string[] completions =
        [
            "best_of", "echo", "frequency_penalty", "ignore_eos", "include_stop_str_in_output", "logit_bias", "logprobs", "max_tokens", "min_p",
            "min_tokens", "model", "n", "presence_penalty", "prompt", "repetition_penalty", "response_format", "return_token_ids", "seed", "stop",
            "stop_token_ids", "stream", "stream_options", "suffix", "temperature", "top_k", "top_p", "truncate_prompt_tokens", "user",
        ];
        string[] chat =
        [
            "add_generation_prompt", "chat_template_kwargs", "frequency_penalty", "ignore_eos", "include_stop_str_in_output", "logit_bias", "logprobs",
            "max_completion_tokens", "max_tokens", "messages", "min_p", "min_tokens", "model", "n", "parallel_tool_calls", "presence_penalty", "repetition_penalty",
            "response_format", "return_token_ids", "seed", "stop", "stop_token_ids", "stream", "stream_options", "temperature", "tool_choice", "tools", "top_k",
            "top_logprobs", "top_p", "truncate_prompt_tokens", "user",
        ];
        Assert.Equal(completions, CompletionEndpoints.CompletionParameters.Order(StringComparer.Ordinal));
        Assert.Equal(chat, CompletionEndpoints.ChatParameters.Order(StringComparer.Ordinal));
        Assert.Empty(CompletionEndpoints.CompletionParameters.Concat(CompletionEndpoints.ChatParameters).Except(Samples.Keys));
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task EveryAcceptedParameterIsListedAndAnswered(string path)
    {
        // Each parameter alone on a minimal request: 200 (a declared parameter the endpoint forgot to read would be refused).
        var parameters = path.Contains("chat") ? CompletionEndpoints.ChatParameters : CompletionEndpoints.CompletionParameters;
        var basis = path.Contains("chat") ? Chat(maxTokens: 3) : Completion(maxTokens: 3);
        foreach (string key in parameters.Order(StringComparer.Ordinal))
        {
            var body = With(basis, key, Samples[key]);
            if (key is "top_logprobs") body["logprobs"] = true;
            if (key is "logprobs" && path.Contains("chat")) body["logprobs"] = true;
            await OkAsync(path, body);
        }
    }

    public static TheoryData<string, string, string> Refused() => new()
    {
        { "/v1/completions", "guided_json", "{\"type\":\"object\"}" },
        { "/v1/completions", "guided_choice", "[\"yes\",\"no\"]" },
        { "/v1/completions", "guided_regex", "\"a+\"" },
        { "/v1/completions", "structured_outputs", "{\"choice\":[\"yes\",\"no\"]}" },
        { "/v1/completions", "response_format", "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"string\",\"format\":\"email\"}}}" },
        { "/v1/completions", "made_up_parameter", "1" },
        { "/v1/chat/completions", "guided_json", "{\"type\":\"object\"}" },
        { "/v1/chat/completions", "guided_choice", "[\"yes\",\"no\"]" },
        { "/v1/chat/completions", "structured_outputs", "{\"choice\":[\"yes\",\"no\"]}" },
        { "/v1/chat/completions", "response_format", "{\"type\":\"xml\"}" },
        { "/v1/chat/completions", "functions", "[{\"name\":\"f\",\"parameters\":{}}]" },
        { "/v1/chat/completions", "function_call", "\"auto\"" },
        { "/v1/chat/completions", "tool_choice", "\"auto\"" },
        { "/v1/chat/completions", "tools", "[{\"type\":\"function\",\"function\":{\"name\":\"bad name\"}}]" },
        { "/v1/chat/completions", "made_up_parameter", "1" },
        // Out of range values of the honoured extras.
        { "/v1/completions", "min_p", "1.5" },
        { "/v1/completions", "repetition_penalty", "0" },
        { "/v1/completions", "min_tokens", "99" },
        { "/v1/completions", "truncate_prompt_tokens", "0" },
        { "/v1/completions", "include_stop_str_in_output", "\"yes\"" },
        { "/v1/completions", "temperature", "1e400" },
        { "/v1/completions", "presence_penalty", "2.5" },
        { "/v1/chat/completions", "frequency_penalty", "-3" },
        { "/v1/completions", "logit_bias", "{\"5\": 101}" },
        { "/v1/completions", "logit_bias", "{\"hello\": 1}" },
        { "/v1/chat/completions", "logit_bias", "{\"99999999\": 1}" },
        { "/v1/chat/completions", "logit_bias", "[1]" },
        { "/v1/completions", "best_of", "0" },
        { "/v1/completions", "logprobs", "21" },
        { "/v1/chat/completions", "top_logprobs", "21" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public async Task UnsupportedParametersAreRefusedNamingThem(string path, string key, string json)
    {
        var result = await SendAsync(path, With(path.Contains("chat") ? Chat() : Completion(), key, json));
        AssertError(HttpStatusCode.BadRequest, result, key);
    }

    [Fact]
    public async Task ANullParameterIsAbsent()
    {
        // Clients serialize unset fields as null; that is not asking for the feature.
        await OkAsync("/v1/chat/completions", With(Chat(), "functions", "null"));
    }

    private static int[] TokenIds(JsonElement choice) => [.. choice.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32())];

    [Fact]
    public async Task MinTokensKeepsStopTokensAwayUntilReached()
    {
        var plain = await OkAsync("/v1/completions", Completion());
        int first = TokenIds(plain)[0];
        // The first greedy token as a stop token ends the completion at once...
        var stopped = await OkAsync("/v1/completions", With(Completion(), "stop_token_ids", $"[{first}]"));
        Assert.Equal([first], TokenIds(stopped));
        Assert.Equal("stop", stopped.GetProperty("finish_reason").GetString());
        // ...and cannot be picked before min_tokens: at least that many other tokens come first.
        var held = await OkAsync("/v1/completions", With(With(Completion(), "stop_token_ids", $"[{first}]"), "min_tokens", "4"));
        var ids = TokenIds(held);
        Assert.True(ids.Length >= 4, $"only {ids.Length} tokens");
        Assert.DoesNotContain(first, ids.Take(4));
    }

    [Fact]
    public async Task MinTokensDefersStopStrings()
    {
        string text = (await OkAsync("/v1/completions", Completion(maxTokens: 12))).GetProperty("text").GetString()!;
        string stop = text[..2];
        Assert.Equal("", (await OkAsync("/v1/completions", With(Completion(maxTokens: 12), "stop", $"[{JsonSerializer.Serialize(stop)}]"))).GetProperty("text").GetString());
        var deferred = await OkAsync("/v1/completions", With(With(Completion(maxTokens: 12), "stop", $"[{JsonSerializer.Serialize(stop)}]"), "min_tokens", "6"));
        Assert.StartsWith(stop, deferred.GetProperty("text").GetString());
    }

    [Fact]
    public async Task IncludeStopStrInOutputKeepsTheStopString()
    {
        string text = (await OkAsync("/v1/completions", Completion(maxTokens: 12))).GetProperty("text").GetString()!;
        Assert.True(text.Length >= 6, $"'{text}' is too short to cut");
        string stop = text.Substring(3, 2);
        int at = text.IndexOf(stop, StringComparison.Ordinal);
        var body = With(Completion(maxTokens: 12), "stop", $"[{JsonSerializer.Serialize(stop)}]");
        Assert.Equal(text[..at], (await OkAsync("/v1/completions", body)).GetProperty("text").GetString());
        Assert.Equal(text[..(at + stop.Length)], (await OkAsync("/v1/completions", With(body, "include_stop_str_in_output", "true"))).GetProperty("text").GetString());
    }

    [Theory]
    [MemberData(nameof(Endpoints))]
    public async Task TruncatePromptTokensKeepsTheLastTokens(string path)
    {
        var basis = path.Contains("chat") ? Chat() : Completion("one two three four five six seven eight nine ten");
        var full = await SendAsync(path, basis);
        int promptTokens = full.Body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        var truncated = await SendAsync(path, With(With(basis, "truncate_prompt_tokens", "4"), "return_token_ids", "true"));
        Assert.Equal(HttpStatusCode.OK, truncated.Status);
        Assert.True(promptTokens > 4);
        Assert.Equal(4, truncated.Body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        if (path.Contains("chat")) return;
        // The same answer as the last four prompt tokens given as the prompt.
        var ids = truncated.Body.GetProperty("prompt_token_ids");
        var direct = await SendAsync(path, With(Completion(), "prompt", ids.GetRawText()));
        Assert.Equal(direct.Body.GetProperty("choices")[0].GetProperty("text").GetString(), truncated.Body.GetProperty("choices")[0].GetProperty("text").GetString());
        var fullIds = (await SendAsync(path, basis)).Body.GetProperty("prompt_token_ids").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.Equal(fullIds[^4..], ids.EnumerateArray().Select(t => t.GetInt32()));
    }

    [Fact]
    public async Task RepetitionPenaltyChangesGreedyOutputAndOneChangesNothing()
    {
        var plain = TokenIds(await OkAsync("/v1/completions", Completion(maxTokens: 16)));
        Assert.Equal(plain, TokenIds(await OkAsync("/v1/completions", With(Completion(maxTokens: 16), "repetition_penalty", "1"))));
        var penalized = TokenIds(await OkAsync("/v1/completions", With(Completion(maxTokens: 16), "repetition_penalty", "3")));
        Assert.NotEqual(plain, penalized);
        // The tiny model repeats itself greedily; a strong penalty makes it repeat less.
        Assert.True(penalized.Distinct().Count() >= plain.Distinct().Count(), $"{plain.Distinct().Count()} distinct tokens without, {penalized.Distinct().Count()} with");
    }

    [Fact]
    public async Task MinPOfOneSamplesTheGreedyTokens()
    {
        var greedy = TokenIds(await OkAsync("/v1/completions", Completion(maxTokens: 16)));
        var sampled = With(With(Completion(maxTokens: 16), "temperature", "1"), "seed", "7");
        Assert.NotEqual(greedy, TokenIds(await OkAsync("/v1/completions", sampled)));
        Assert.Equal(greedy, TokenIds(await OkAsync("/v1/completions", With(sampled, "min_p", "1"))));
    }
}
