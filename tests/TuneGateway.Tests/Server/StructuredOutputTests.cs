#pragma warning disable OPENAI001 // Seed is marked experimental in the OpenAI client.
using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using OpenAI.Chat;
using TuneGateway.Engine.Serving;
using TuneGateway.Engine.Structured;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;
using TuneGateway.Tests.Chat;
using TuneGateway.Tests.Structured;
using static TuneGateway.Tests.Server.ServerTestHost;

namespace TuneGateway.Tests.Server;

/// <summary>
/// A serve host (gateway + worker) on the tiny model with a Hermes-style tools template and the
/// hermes parser; whitespace runs are kept short so that forced outputs fit the tiny model's 512 positions.
/// </summary>
public sealed class ToolServeFixture : IAsyncLifetime
{
    public static string ToolsTemplate => Path.Combine(ChatFixtures.Directory, "hermes-tiny-tools.jinja");

    public static EngineOptions Engine(string parser) => TinyEngine() with
    {
        ChatTemplatePath = ToolsTemplate,
        ToolCallParser = parser,
        StructuredOutputs = new StructuredOutputOptions { MaxWhitespace = 2 },
    };

    public WebApplication App { get; private set; } = null!;
    public string BaseUrl { get; private set; } = "";
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(3) };
    public EngineHost Host => App.Services.GetRequiredService<EngineHost>();

    public async Task InitializeAsync()
    {
        App = ServeHost.Create(new WorkerOptions { Engine = Engine("hermes") }, new GatewayOptions(), Settings());
        BaseUrl = await StartReadyAsync(App, Http);
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await StopAsync(App);
    }

    public ChatClient Chat(string model) => Client(BaseUrl, model);

    public static ChatClient Client(string baseUrl, string model) =>
        new(model, new ApiKeyCredential("sk-open"), new OpenAIClientOptions { Endpoint = new Uri(baseUrl + "/v1"), NetworkTimeout = TimeSpan.FromMinutes(3) });
}

public sealed class StructuredOutputTests(ToolServeFixture serve) : IClassFixture<ToolServeFixture>
{
    /// <summary>Every part bounded (string lengths, item counts, digits, whitespace): any output ends within max_tokens, so all must stop.</summary>
    private const string Bounded = """
        {"type":"object","properties":{
          "name":{"type":"string","maxLength":6},
          "age":{"type":"integer"},
          "mood":{"enum":["happy","sad"]},
          "tags":{"type":"array","items":{"type":"boolean"},"maxItems":2},
          "pet":{"anyOf":[{"type":"null"},{"$ref":"#/$defs/pet"}]}},
         "required":["name","age","mood","tags","pet"],"additionalProperties":false,
         "$defs":{"pet":{"type":"object","properties":{"kind":{"const":"cat"},"lives":{"type":"integer"}},"required":["kind","lives"],"additionalProperties":false}}}
        """;

    private const string Small = """{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer"}},"required":["ok","n"],"additionalProperties":false}""";

    private static ChatCompletionOptions JsonOptions(string schema, long seed, float temperature = 1) => new()
    {
        ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("reply", BinaryData.FromString(schema), jsonSchemaIsStrict: true),
        MaxOutputTokenCount = 400,
        Temperature = temperature,
        Seed = seed,
    };

    [Fact]
    public async Task Json_schema_outputs_validate_with_an_independent_validator()
    {
        var client = serve.Chat("llama-tiny");
        for (int seed = 0; seed < 4; seed++)
        {
            ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Describe someone.")], JsonOptions(Bounded, seed, temperature: seed == 0 ? 0 : 1));
            Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
            RandomDecoder.AssertValid(Bounded, completion.Content[0].Text);
        }
    }

    [Fact]
    public async Task Json_object_mode_stops_only_with_a_json_object()
    {
        var client = serve.Chat("shout");
        for (int seed = 0; seed < 4; seed++)
        {
            var options = new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(), MaxOutputTokenCount = 200, Temperature = 1, Seed = seed };
            ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("Any JSON.")], options);
            if (completion.FinishReason == ChatFinishReason.Stop) RandomDecoder.AssertValid("""{"type":"object"}""", completion.Content[0].Text);
            else Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        }
    }

    [Fact]
    public async Task Streamed_constrained_output_is_the_same_valid_text()
    {
        var client = serve.Chat("reverse");
        var options = JsonOptions(Bounded, 7, temperature: 0);
        ChatCompletion whole = await client.CompleteChatAsync([new UserChatMessage("Stream it.")], options);
        var streamed = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Stream it.")], options))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(ChatFinishReason.Stop, finish);
        Assert.Equal(whole.Content[0].Text, streamed.ToString());
        RandomDecoder.AssertValid(Bounded, streamed.ToString());
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a+$"}""", "pattern")]
    [InlineData("""{"type":"object","properties":{"n":{"type":"integer","minimum":0}}}""", "minimum")]
    public async Task An_unsupported_schema_keyword_is_a_400_naming_it(string schema, string keyword)
    {
        string body = """{"model":"llama-tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","strict":true,"schema":"""
            + schema + "}}}";
        var result = await SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/v1/chat/completions", body));
        AssertError(HttpStatusCode.BadRequest, result, "response_format");
        Assert.Contains($"'{keyword}'", result.Body.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("stop", "\"}\"")]
    [InlineData("min_tokens", "3")]
    public async Task Options_that_would_cut_a_constrained_output_are_refused(string field, string value)
    {
        var body = $$"""{"model":"llama-tiny","prompt":"x","response_format":{"type":"json_object"},"{{field}}":{{value}}}""";
        AssertError(HttpStatusCode.BadRequest, await SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/v1/completions", body)), field);
    }

    [Fact]
    public async Task Constrained_free_and_adapter_rows_run_in_one_batch()
    {
        int widest = 0;
        void Record(SchedulerStats stats) => widest = Math.Max(widest, stats.Running);
        var scheduler = serve.Host.Engine!.Scheduler;
        scheduler.StepCompleted += Record;
        try
        {
            // Free rows that run long (ignore_eos), and constrained rows on the base model and on both adapters with different schemas.
            var free = new[] { "llama-tiny", "shout" }.Select(model => SendJsonAsync(serve.Http, Post(serve.BaseUrl + "/v1/completions",
                new { model, prompt = "Once upon a time", max_tokens = 120, ignore_eos = true, temperature = 0 }))).ToArray();
            (string Model, string Schema)[] rows = [("llama-tiny", Bounded), ("shout", Small), ("reverse", Bounded)];
            var constrained = rows.Select((row, i) => serve.Chat(row.Model).CompleteChatAsync([new UserChatMessage("JSON please.")], JsonOptions(row.Schema, i))).ToArray();
            var answers = await Task.WhenAll(constrained);
            for (int i = 0; i < rows.Length; i++)
            {
                Assert.Equal(ChatFinishReason.Stop, answers[i].Value.FinishReason);
                RandomDecoder.AssertValid(rows[i].Schema, answers[i].Value.Content[0].Text);
            }
            foreach (var result in await Task.WhenAll(free))
            {
                Assert.Equal(HttpStatusCode.OK, result.Status);
                Assert.Equal(120, result.Body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            }
        }
        finally
        {
            scheduler.StepCompleted -= Record;
        }
        Assert.True(widest >= 4, $"The requests never ran together (at most {widest} at once).");
    }
}
