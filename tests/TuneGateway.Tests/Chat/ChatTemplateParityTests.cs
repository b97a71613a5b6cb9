using System.Text.Json;
using TuneGateway.Engine.Chat;

namespace TuneGateway.Tests.Chat;

/// <summary>
/// Every real template × conversation × add_generation_prompt must render byte for byte as Python's jinja2 did in
/// Hugging Face's environment, or fail the way it failed.
/// </summary>
public class ChatTemplateParityTests
{
    public static TheoryData<string> CaseIds => new(ChatFixtures.Cases.Keys.Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(CaseIds))]
    public void RendersLikeHuggingFace(string caseId)
    {
        var c = ChatFixtures.Cases[caseId];
        var template = ChatFixtures.Templates[c.GetProperty("template").GetString()!];
        var messages = c.GetProperty("messages").EnumerateArray().Select(ChatFixtures.ToMessage).ToList();
        var extra = ChatFixtures.ToVariables(c.GetProperty("extra"));
        if (c.GetProperty("tools").ValueKind != JsonValueKind.Null)
        {
            extra["tools"] = c.GetProperty("tools").Clone();
        }

        string Render() => template.Render(
            messages,
            c.GetProperty("add_generation_prompt").GetBoolean(),
            c.GetProperty("bos_token").GetString(),
            c.GetProperty("eos_token").GetString(),
            extra);

        if (c.TryGetProperty("expected", out var expected))
        {
            Assert.Equal(expected.GetString(), Render());
            return;
        }

        var error = Assert.Throws<ChatTemplateException>(Render);
        var pythonType = c.GetProperty("error_type").GetString();
        Assert.Equal(pythonType == "TemplateError" ? ChatTemplateErrorKind.Raised : ChatTemplateErrorKind.Render, error.Kind);
        Assert.Equal(c.GetProperty("error").GetString(), error.Detail);
        if (error.Kind == ChatTemplateErrorKind.Raised)
        {
            // A template's own message goes to the client unchanged.
            Assert.Equal(c.GetProperty("error").GetString(), error.Message);
        }
    }

    [Fact]
    public void FixturesCoverEveryTemplateWithRendersAndErrors()
    {
        var cases = ChatFixtures.Cases.Values.ToList();
        Assert.Equal(11, ChatFixtures.Templates.Count);
        foreach (var name in ChatFixtures.Templates.Keys)
        {
            Assert.Contains(cases, c => c.GetProperty("template").GetString() == name && c.TryGetProperty("expected", out _));
        }

        Assert.Contains(cases, c => c.TryGetProperty("error_type", out var t) && t.GetString() == "TemplateError");
        Assert.Contains(cases, c => c.GetProperty("conversation").GetString() == "tool_call_roundtrip" && c.TryGetProperty("expected", out _));
    }
}
