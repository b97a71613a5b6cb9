using System.Text.Json;
using System.Text.Json.Nodes;
using TuneGateway.Engine.Chat;

namespace TuneGateway.Tests.Chat;

/// <summary>The public API: loading templates from model directories and files, and rendering conversations.</summary>
public sealed class ChatTemplateTests : IDisposable
{
    private const string ChatMl =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private readonly string _directory = Directory.CreateTempSubdirectory("chat-template-tests-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static readonly ChatMessage[] Conversation = [new("system", "Be brief."), new("user", "Hi")];

    private void WriteConfig(object chatTemplate) =>
        File.WriteAllText(Path.Combine(_directory, "tokenizer_config.json"),
            JsonSerializer.Serialize(new Dictionary<string, object> { ["eos_token"] = "<|im_end|>", ["chat_template"] = chatTemplate }));

    [Fact]
    public void LoadsTheTemplateOfTheLlamaTinyFixture()
    {
        var template = ChatTemplate.FromModelDirectory(Path.Combine(ChatFixtures.Directory, "..", "llama-tiny", "base"));
        Assert.NotNull(template);
        var expected = ChatFixtures.Cases["llama-tiny-chatml/multi_turn/gen"];
        var messages = expected.GetProperty("messages").EnumerateArray().Select(ChatFixtures.ToMessage).ToList();
        Assert.Equal(expected.GetProperty("expected").GetString(), template.Render(messages, addGenerationPrompt: true, eosToken: "<|endoftext|>"));
    }

    [Fact]
    public void ReadsAStringTemplateFromTokenizerConfig()
    {
        WriteConfig(ChatMl);
        var template = ChatTemplate.FromModelDirectory(_directory);
        Assert.NotNull(template);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            template.Render(Conversation, addGenerationPrompt: true));
    }

    [Fact]
    public void TakesTheDefaultOfNamedTemplates()
    {
        WriteConfig(new object[]
        {
            new { name = "tool_use", template = "TOOLS" },
            new { name = "default", template = "DEFAULT {{ messages|length }}" },
        });
        Assert.Equal("DEFAULT 2", ChatTemplate.FromModelDirectory(_directory)!.Render(Conversation, false));
    }

    [Fact]
    public void NamedTemplatesWithoutDefaultAreAnError()
    {
        WriteConfig(new object[] { new { name = "tool_use", template = "TOOLS" } });
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromModelDirectory(_directory));
        Assert.Equal(ChatTemplateErrorKind.Load, error.Kind);
        Assert.Contains("none named 'default'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ChatTemplateJinjaTakesPrecedenceAsInTransformers()
    {
        WriteConfig("FROM CONFIG");
        File.WriteAllText(Path.Combine(_directory, "chat_template.jinja"), "FROM FILE\n");
        Assert.Equal("FROM FILE", ChatTemplate.FromModelDirectory(_directory)!.Render(Conversation, false));
    }

    [Fact]
    public void NoTemplateGivesNull()
    {
        Assert.Null(ChatTemplate.FromModelDirectory(_directory));
        File.WriteAllText(Path.Combine(_directory, "tokenizer_config.json"), """{"eos_token": "</s>"}""");
        Assert.Null(ChatTemplate.FromModelDirectory(_directory));
    }

    [Fact]
    public void AnUnsupportedTemplateInAModelDirectoryFailsOnLoad()
    {
        WriteConfig("{% include 'x.jinja' %}");
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromModelDirectory(_directory));
        Assert.Equal(ChatTemplateErrorKind.Syntax, error.Kind);
    }

    [Fact]
    public void FromFileReportsAMissingFile()
    {
        var error = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromFile(Path.Combine(_directory, "missing.jinja")));
        Assert.Equal(ChatTemplateErrorKind.Load, error.Kind);
        Assert.Contains("missing.jinja", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SpecialTokensAreDefinedOnlyWhenGivenAndToolsDefaultToNone()
    {
        var template = ChatTemplate.Parse("{{ bos_token is defined }} {{ eos_token }} {{ tools is none }} {{ documents is none }} {{ add_generation_prompt }}");
        Assert.Equal("False </s> True True True", template.Render([], addGenerationPrompt: true, eosToken: "</s>"));
        Assert.Equal("True  True True False", template.Render([], false, bosToken: "<s>"));
    }

    [Fact]
    public void MessagesLeaveOutUnsetKeys()
    {
        var template = ChatTemplate.Parse(
            "{% for m in messages %}{{ m.role }}:{{ m.content is defined }},{{ 'tool_calls' in m }},{{ m.tool_call_id }},{{ m.name }};{% endfor %}");
        ChatMessage[] messages =
        [
            new("assistant", null) { ToolCalls = [new ChatToolCall("c1", "f", new Dictionary<string, object?> { ["x"] = 1 })] },
            new("tool", "42") { ToolCallId = "c1", Name = "f" },
        ];
        Assert.Equal("assistant:False,True,,;tool:True,False,c1,f;", template.Render(messages, false));
    }

    [Fact]
    public void ToolCallArgumentsAndToolsMayBeJsonOrDotNetData()
    {
        var template = ChatTemplate.Parse(
            "{% for m in messages %}{% for c in m.tool_calls %}{{ c.function.name }}{{ c.function.arguments|tojson }}{% endfor %}{% endfor %}|{{ tools|tojson }}");
        var arguments = JsonDocument.Parse("""{"city": "Paris", "days": 2, "ratio": 0.5, "ok": true}""").RootElement;
        ChatMessage[] messages = [new("assistant", null) { ToolCalls = [new ChatToolCall("c1", "weather", arguments)] }];
        var tools = new List<object?> { new Dictionary<string, object?> { ["n"] = 3, ["f"] = 1.5f, ["m"] = 2m, ["node"] = JsonNode.Parse("[1, \"a\"]") } };
        Assert.Equal("""weather{"city": "Paris", "days": 2, "ratio": 0.5, "ok": true}|[{"n": 3, "f": 1.5, "m": 2, "node": [1, "a"]}]""",
            template.Render(messages, false, extraVariables: new Dictionary<string, object?> { ["tools"] = tools }));
    }

    [Fact]
    public void StrftimeNowReadsTheInjectedClock()
    {
        var template = ChatTemplate.Parse("{{ strftime_now('%d %B %Y, %H:%M') }}");
        var fixedTemplate = template.WithTimeProvider(new FixedTimeProvider(new DateTimeOffset(2031, 12, 24, 18, 30, 0, TimeSpan.Zero)));
        Assert.Equal("24 December 2031, 18:30", fixedTemplate.Render([], false));
        Assert.Same(TimeProvider.System, template.TimeProvider);
    }

    [Fact]
    public void ATemplateCanBeRenderedConcurrently()
    {
        var template = ChatFixtures.Templates["qwen2.5-instruct"];
        var expected = ChatFixtures.Cases["qwen2.5-instruct/multi_turn/gen"];
        var messages = expected.GetProperty("messages").EnumerateArray().Select(ChatFixtures.ToMessage).ToList();
        var results = new string[64];
        Parallel.For(0, results.Length, i => results[i] = template.Render(messages, true, eosToken: "<|im_end|>"));
        Assert.All(results, r => Assert.Equal(expected.GetProperty("expected").GetString(), r));
    }

    [Fact]
    public void InputNestedTooDeeplyIsRejected()
    {
        var json = new string('[', 2000) + new string(']', 2000);
        var error = Assert.Throws<ChatTemplateException>(() =>
            ChatTemplate.Parse("{{ x|tojson }}").Render(new Dictionary<string, object?> { ["x"] = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 4000 }).RootElement }));
        Assert.Contains("nests more than", error.Message, StringComparison.Ordinal);
    }
}
