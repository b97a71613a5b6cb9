using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using OpenAI.Chat;
using TuneGateway.Gateway;
using TuneGateway.Worker;
using TuneGateway.Tests.Chat;
using TuneGateway.Tests.Structured;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

public sealed class ToolCallingTests(ToolServeFixture serve) : IClassFixture<ToolServeFixture>
{
    private const string WeatherParameters = """{"type":"object","properties":{"city":{"type":"string","maxLength":8},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""";
    private const string TimeParameters = """{"type":"object","properties":{"tz":{"enum":["UTC","CET"]}},"required":["tz"],"additionalProperties":false}""";

    private static readonly Dictionary<string, string> s_parameters = new() { ["get_weather"] = WeatherParameters, ["get_time"] = TimeParameters };

    /// <summary>
    /// One call unless asked (several calls may run past max_tokens on a random-weight model). The
    /// prompt with both tools takes ~390 of the tiny model's 512 positions; a forced call fits in 120 tokens.
    /// </summary>
    private static ChatCompletionOptions ToolOptions(ChatToolChoice choice, bool parallel = false)
    {
        var options = new ChatCompletionOptions { ToolChoice = choice, AllowParallelToolCalls = parallel, MaxOutputTokenCount = 120, Temperature = 0 };
        options.Tools.Add(ChatTool.CreateFunctionTool("get_weather", functionParameters: BinaryData.FromString(WeatherParameters)));
        options.Tools.Add(ChatTool.CreateFunctionTool("get_time", functionParameters: BinaryData.FromString(TimeParameters)));
        return options;
    }

    private static void AssertValidCall(string name, string arguments)
    {
        Assert.True(s_parameters.ContainsKey(name), $"Unknown function {name}");
        RandomDecoder.AssertValid(s_parameters[name], arguments);
    }

    [Fact]
    public async Task Required_tool_choice_yields_valid_calls_and_streams_them_as_deltas()
    {
        var client = serve.Chat("llama-tiny");
        ChatMessage[] messages = [new UserChatMessage("Oslo?")];
        ChatCompletion whole = await client.CompleteChatAsync(messages, ToolOptions(ChatToolChoice.CreateRequiredChoice()));
        Assert.Equal(ChatFinishReason.ToolCalls, whole.FinishReason);
        Assert.NotEmpty(whole.ToolCalls);
        foreach (var call in whole.ToolCalls)
        {
            Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);
            AssertValidCall(call.FunctionName, call.FunctionArguments.ToString());
        }

        var names = new Dictionary<int, string>();
        var ids = new Dictionary<int, string>();
        var arguments = new Dictionary<int, StringBuilder>();
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync(messages, ToolOptions(ChatToolChoice.CreateRequiredChoice())))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                if (part.ToolCallId is { } id)
                {
                    ids[part.Index] = id;
                    names[part.Index] = part.FunctionName;
                    arguments[part.Index] = new StringBuilder();
                }
                arguments[part.Index].Append(part.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.Equal(whole.ToolCalls.Select(c => (c.FunctionName, c.FunctionArguments.ToString())),
            names.OrderBy(n => n.Key).Select(n => (n.Value, arguments[n.Key].ToString())));
        Assert.All(ids.Values, id => Assert.StartsWith("call_", id, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_named_function_is_called_once_and_finishes_with_stop()
    {
        var options = ToolOptions(ChatToolChoice.CreateFunctionChoice("get_time"));
        options.Temperature = 1;
        ChatCompletion completion = await serve.Chat("shout").CompleteChatAsync([new UserChatMessage("Time?")], options);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_time", call.FunctionName);
        AssertValidCall(call.FunctionName, call.FunctionArguments.ToString());
    }

    [Fact]
    public async Task Parallel_tool_calls_are_each_valid()
    {
        var options = ToolOptions(ChatToolChoice.CreateRequiredChoice(), parallel: true);
        ChatCompletion completion = await serve.Chat("reverse").CompleteChatAsync([new UserChatMessage("Both please.")], options);
        // The model may go on calling until max_tokens; a stopped answer is one or more whole, valid calls.
        if (completion.FinishReason == ChatFinishReason.Length) return;
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.NotEmpty(completion.ToolCalls);
        foreach (var call in completion.ToolCalls) AssertValidCall(call.FunctionName, call.FunctionArguments.ToString());
    }

    [Fact]
    public async Task Tools_and_tool_history_reach_the_template_as_transformers_passes_them()
    {
        // The fixture's short tool round trip, sent through the API: the prompt is jinja2's render of it.
        var fixture = ChatFixtures.Cases["hermes-tiny-tools/tool_call_short/gen"];
        var messages = JsonNode.Parse(fixture.GetProperty("messages").GetRawText())!.AsArray();
        foreach (var message in messages)
        {
            // OpenAI clients send arguments as JSON text.
            foreach (var call in message!["tool_calls"]?.AsArray() ?? [])
                call!["function"]!["arguments"] = call["function"]!["arguments"]!.ToJsonString();
        }
        var body = new JsonObject
        {
            ["model"] = "llama-tiny", ["messages"] = messages, ["tools"] = JsonNode.Parse(fixture.GetProperty("tools").GetRawText()),
            ["tool_choice"] = "none", ["max_tokens"] = 1, ["return_token_ids"] = true,
        };
        var result = await SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/v1/chat/completions", body.ToJsonString()));
        Assert.Equal(HttpStatusCode.OK, result.Status);
        var prompt = result.Body.GetProperty("prompt_token_ids").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.Equal(fixture.GetProperty("expected").GetString(), ConstrainedDecodingTests.Tiny.Decode(prompt));
    }

    [Theory]
    [InlineData("""{"type":"function","function":{"name":"nope"}}""", "tool_choice")]
    [InlineData("\"sometimes\"", "tool_choice")]
    public async Task Bad_tool_choices_are_refused_naming_the_field(string choice, string param)
    {
        var body = $$$"""{"model":"llama-tiny","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"get_time","parameters":{{{TimeParameters}}}}}],"tool_choice":{{{choice}}}}""";
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/v1/chat/completions", body)), param);
    }

    [Theory]
    [InlineData("llama3_json")]
    [InlineData("mistral")]
    public async Task Every_parser_format_yields_valid_forced_calls_end_to_end(string parser)
    {
        var app = WorkerHost.Create(new WorkerOptions { Engine = ToolServeFixture.Engine(parser) }, Settings());
        using var http = new HttpClient();
        string url = await StartReadyAsync(app, http);
        try
        {
            var client = ToolServeFixture.Client(url, "llama-tiny");
            ChatCompletion required = await client.CompleteChatAsync([new UserChatMessage("Weather?")], ToolOptions(ChatToolChoice.CreateRequiredChoice()));
            Assert.Equal(ChatFinishReason.ToolCalls, required.FinishReason);
            Assert.NotEmpty(required.ToolCalls);
            foreach (var call in required.ToolCalls) AssertValidCall(call.FunctionName, call.FunctionArguments.ToString());
            ChatCompletion named = await client.CompleteChatAsync([new UserChatMessage("Weather?")], ToolOptions(ChatToolChoice.CreateFunctionChoice("get_weather")));
            Assert.Equal("get_weather", Assert.Single(named.ToolCalls).FunctionName);
            AssertValidCall("get_weather", named.ToolCalls[0].FunctionArguments.ToString());
        }
        finally
        {
            await StopAsync(app);
        }
    }
}
