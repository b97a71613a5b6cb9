using TuneGateway.Engine.Chat;

namespace TuneGateway.Tests.Chat;

/// <summary>
/// Small templates that exercise one feature each (whitespace control, loops, scoping, filters, tests, operators,
/// undefined values, ...), checked against what Python's jinja2 rendered for them.
/// </summary>
public class JinjaSnippetParityTests
{
    public static TheoryData<string> SnippetNames => new(ChatFixtures.Snippets.Keys.Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(SnippetNames))]
    public void RendersLikeJinja2(string name)
    {
        var snippet = ChatFixtures.Snippets[name];
        var source = snippet.GetProperty("template").GetString()!;
        var variables = ChatFixtures.ToVariables(snippet.GetProperty("context"));
        string Render() => ChatTemplate.Parse(source).WithTimeProvider(ChatFixtures.Clock).Render(variables);

        if (snippet.TryGetProperty("expected", out var expected))
        {
            Assert.Equal(expected.GetString(), Render());
            return;
        }

        var error = Assert.Throws<ChatTemplateException>(Render);
        Assert.NotEqual(ChatTemplateErrorKind.Syntax, error.Kind);
        Assert.Equal(snippet.GetProperty("error").GetString(), error.Detail);
    }
}
