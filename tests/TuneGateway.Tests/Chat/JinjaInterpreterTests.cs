using System.Text.Json;
using TuneGateway.Engine.Chat;

namespace TuneGateway.Tests.Chat;

/// <summary>Unit tests of the Jinja interpreter behind <see cref="ChatTemplate"/>.</summary>
public class JinjaInterpreterTests
{
    private static string Render(string source, object? variables = null)
    {
        var values = new Dictionary<string, object?>();
        if (variables is not null)
        {
            foreach (var property in variables.GetType().GetProperties())
            {
                values[property.Name] = property.GetValue(variables);
            }
        }

        return ChatTemplate.Parse(source).Render(values);
    }

    private static ChatTemplateException RenderFails(string source, object? variables = null) =>
        Assert.Throws<ChatTemplateException>(() => Render(source, variables));

    private static ChatTemplateException ParseFails(string source) =>
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(source));

    // ------------------------------------------------------------ whitespace control

    [Theory]
    [InlineData("{% if true %}\nA\n{% endif %}\nB", "A\nB")] // trim_blocks: newline after a block tag goes
    [InlineData("  {% if true %}A{% endif %}", "A")] // lstrip_blocks: indentation before a block tag goes
    [InlineData("  {{ 'A' }}", "  A")] // ... but not before a print tag
    [InlineData("x  {% if true %}A{% endif %}", "x  A")] // ... nor after text on the same line
    [InlineData("a \n {{- 'b' -}} \n c", "abc")] // '-' strips all whitespace, newlines included
    [InlineData("a\n  {%+ if true %}b{% endif %}", "a\n  b")] // '+' keeps the indentation
    [InlineData("{% if true +%}\nb{% endif %}", "\nb")] // '+%}' keeps the newline
    [InlineData("a\n{# comment #}\nb", "a\nb")] // comments take part in trim_blocks
    [InlineData("text\n", "text")] // one trailing newline is dropped
    [InlineData("text\n\n", "text\n")]
    [InlineData("a\r\nb", "a\nb")] // newlines are normalised
    public void AppliesHuggingFaceWhitespaceRules(string source, string expected) =>
        Assert.Equal(expected, Render(source));

    [Fact]
    public void RawBlocksAreNotInterpreted() =>
        Assert.Equal("{{ x }}{% if %}", Render("{% raw %}{{ x }}{% if %}{% endraw %}"));

    // ------------------------------------------------------------ control flow and scoping

    [Fact]
    public void ForLoopExposesLoopVariables() =>
        Assert.Equal(
            "1/3 0 first3;2/3 1 2;3/3 2 last 1;",
            Render("{% for x in items %}{{ loop.index }}/{{ loop.length }} {{ loop.index0 }} {{ 'first' if loop.first else '' }}" +
                   "{{ 'last ' if loop.last else '' }}{{ loop.revindex }};{% endfor %}", new { items = new[] { "a", "b", "c" } }));

    [Fact]
    public void ForLoopFilterCountsOnlyKeptItems() =>
        Assert.Equal("b:1/2 d:2/2 ", Render(
            "{% for m in msgs if m.role != 'system' %}{{ m.content }}:{{ loop.index }}/{{ loop.length }} {% endfor %}",
            new
            {
                msgs = new[]
                {
                    new Dictionary<string, object?> { ["role"] = "system", ["content"] = "a" },
                    new Dictionary<string, object?> { ["role"] = "user", ["content"] = "b" },
                    new Dictionary<string, object?> { ["role"] = "system", ["content"] = "c" },
                    new Dictionary<string, object?> { ["role"] = "user", ["content"] = "d" },
                },
            }));

    [Fact]
    public void ForElseRunsWhenNothingIterates() =>
        Assert.Equal("none", Render("{% for x in [] %}{{ x }}{% else %}none{% endfor %}"));

    [Fact]
    public void BreakAndContinue() =>
        Assert.Equal("013", Render("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"));

    [Fact]
    public void SetInsideLoopDoesNotLeakButNamespaceDoes() =>
        Assert.Equal("0|3", Render(
            "{% set total = 0 %}{% set ns = namespace(total=0) %}{% for i in [1, 2] %}{% set total = total + i %}" +
            "{% set ns.total = ns.total + i %}{% endfor %}{{ total }}|{{ ns.total }}"));

    [Fact]
    public void SetInsideIfLeaks() =>
        Assert.Equal("yes", Render("{% if true %}{% set v = 'yes' %}{% endif %}{{ v }}"));

    [Fact]
    public void AssigningAnAttributeOfANonNamespaceFails() =>
        Assert.Contains("non-namespace", RenderFails("{% set d = {} %}{% set d.x = 1 %}").Message, StringComparison.Ordinal);

    [Fact]
    public void MacrosWithDefaultsAndCallBlocks() =>
        Assert.Equal("[a:1][b:2]<i>x</i>", Render(
            "{% macro item(name, n=1) %}[{{ name }}:{{ n }}]{% endmacro %}{{ item('a') }}{{ item('b', n=2) }}" +
            "{% macro wrap() %}<i>{{ caller() }}</i>{% endmacro %}{% call wrap() %}x{% endcall %}"));

    [Fact]
    public void CallsSpreadArgumentsAndKeywords() =>
        Assert.Equal("[a:2][b:3]", Render(
            "{% macro item(name, n=1) %}[{{ name }}:{{ n }}]{% endmacro %}{% set args = ['a', 2] %}{{ item(*args) }}{{ item(**{'name': 'b', 'n': 3}) }}"));

    [Fact]
    public void IfElifElse() =>
        Assert.Equal("two", Render("{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %}", new { n = 2 }));

    // ------------------------------------------------------------ values and operators

    [Theory]
    [InlineData("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 8 }}", "3 -4 1 2 3.5 256")]
    [InlineData("{{ 1 + 1.5 }} {{ 10 / 5 }} {{ 0.1 + 0.2 }} {{ 1e20 }}", "2.5 2.0 0.30000000000000004 1e+20")]
    [InlineData("{{ 'a' ~ 1 ~ none ~ true }}", "a1NoneTrue")]
    [InlineData("{{ [1, 'two', none, false] }} {{ {'k': 'v'} }} {{ (1,) }}", "[1, 'two', None, False] {'k': 'v'} (1,)")]
    [InlineData("{{ 'a' if x else 'b' }}|{{ 'a' if not x }}|{{ 'a' if x }}", "b|a|")]
    [InlineData("{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'ab' in 'cabd' }} {{ 3 not in [1, 2] }}", "True True True True")]
    [InlineData("{{ 0 or 'x' }} {{ 'y' and 0 }} {{ not none }}", "x 0 True")]
    [InlineData("{{ l[1:] }} {{ l[::-1] }} {{ l[-1] }} {{ 'hello'[1:3] }}", "[2, 3] [3, 2, 1] 3 el")]
    public void EvaluatesExpressionsLikePython(string source, string expected) =>
        Assert.Equal(expected, Render(source, new { x = 0, l = new[] { 1, 2, 3 } }));

    [Fact]
    public void StringAndDictMethods() =>
        Assert.Equal("a b|['a', 'b']|True|True|X|v|dflt|['k']", Render(
            "{{ '  a b  '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|" +
            "{{ 'x'.upper() }}|{{ d.get('k') }}|{{ d.get('z', 'dflt') }}|{{ d.keys()|list }}",
            new { d = new Dictionary<string, object?> { ["k"] = "v" } }));

    [Fact]
    public void Filters() =>
        Assert.Equal("Hi|3|HI|Hi there|a-b|x, y|1|3|def|5|['b']|[1, 3]|  x", Render(
            "{{ '  Hi  '|trim }}|{{ [1, 2, 3]|length }}|{{ 'hi'|upper }}|{{ 'hi THERE'|capitalize }}|{{ 'a b'|replace(' ', '-') }}|" +
            "{{ ['x', 'y']|join(', ') }}|{{ [1, 2]|first }}|{{ [1, 2, 3]|last }}|{{ missing|default('def') }}|{{ '5'|int }}|" +
            "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}|{{ [1, 2, 3]|reject('even')|list }}|" +
            "{{ 'x'|indent(2, true) }}",
            new
            {
                msgs = new[]
                {
                    new Dictionary<string, object?> { ["role"] = "system", ["content"] = "a" },
                    new Dictionary<string, object?> { ["role"] = "user", ["content"] = "b" },
                },
            }));

    [Fact]
    public void ToJsonIsJsonDumpsWithoutHtmlEscaping()
    {
        var data = JsonDocument.Parse("""{"b": [1, 2.5, true, null], "a": "é <tag> & \"q\"\n"}""").RootElement;
        Assert.Equal(
            """{"b": [1, 2.5, true, null], "a": "é <tag> & \"q\"\n"}""",
            Render("{{ data|tojson }}", new { data }));
        Assert.Equal(
            "{\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"a\": \"é <tag> & \\\"q\\\"\\n\"\n}",
            Render("{{ data|tojson(indent=2) }}", new { data }));
        Assert.Equal("""{"a":"é <tag> & \"q\"\n","b":[1,2.5,true,null]}""",
            Render("{{ data|tojson(separators=(',', ':'), sort_keys=true) }}", new { data }));
    }

    // ------------------------------------------------------------ undefined

    [Fact]
    public void UndefinedPrintsEmptyAndIsFalsy() =>
        Assert.Equal("[][False][True][0][][none]", Render(
            "[{{ nope }}][{{ nope is defined }}][{{ nope is undefined }}][{{ nope|length }}][{{ d.missing }}]" +
            "[{% for x in nope %}x{% else %}none{% endfor %}]",
            new { d = new Dictionary<string, object?>() }));

    [Fact]
    public void UsingAnUndefinedValueFails()
    {
        Assert.Equal("'nope' is undefined", RenderFails("{{ nope.attribute }}").Detail);
        Assert.Equal("'nope' is undefined", RenderFails("{{ nope + 1 }}").Detail);
        Assert.Equal("'dict object' has no attribute 'content'",
            RenderFails("{{ m.content + '!' }}", new { m = new Dictionary<string, object?> { ["role"] = "user" } }).Detail);
    }

    // ------------------------------------------------------------ errors

    [Fact]
    public void RaiseExceptionGivesTheTemplatesMessage()
    {
        var error = RenderFails("{% if true %}\n{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}");
        Assert.Equal(ChatTemplateErrorKind.Raised, error.Kind);
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", error.Message);
        Assert.Equal(2, error.Line);
    }

    [Fact]
    public void RenderErrorsNameTheLine()
    {
        var error = RenderFails("line one\n\n{{ 'text' + 1 }}");
        Assert.Equal(ChatTemplateErrorKind.Render, error.Kind);
        Assert.Equal(3, error.Line);
        Assert.Equal("Chat template error at line 3: can only concatenate str (not \"int\") to str", error.Message);
    }

    [Theory]
    [InlineData("{% include 'other.jinja' %}", 1, 4, "'{% include %}' tag is not supported")]
    [InlineData("{% extends 'base' %}", 1, 4, "'{% extends %}' tag is not supported")]
    [InlineData("ok\n  {% frobnicate %}", 2, 6, "unknown tag 'frobnicate'")]
    [InlineData("{{ x | nosuchfilter }}", 1, 8, "no filter named 'nosuchfilter'")]
    [InlineData("{% if x is nosuchtest %}{% endif %}", 1, 12, "no test named 'nosuchtest'")]
    [InlineData("{% if x %}\nunclosed", 2, 9, "looking for the tag 'elif' or 'else' or 'endif' to close 'if'")]
    [InlineData("{% for x in y %}{% endif %}", 1, 20, "unknown tag 'endif'; expected 'endfor' or 'else' to close 'for'")]
    [InlineData("{{ 1 + }}", 1, 8, "unexpected end of print statement")]
    [InlineData("{{ 'open }}", 1, 4, "unterminated string literal")]
    [InlineData("{% break %}", 1, 4, "'break' outside of a loop")]
    [InlineData("{% for x in y recursive %}{% endfor %}", 1, 15, "recursive for loops are not supported")]
    [InlineData("{% do items.append(1) %}", 1, 4, "'{% do %}' tag is not supported")]
    [InlineData("{{ f(**kw, x) }}", 1, 12, "no argument may follow **kwargs")]
    public void UnsupportedOrInvalidTemplatesFailAtParseTimeWithPosition(string source, int line, int column, string message)
    {
        var error = ParseFails(source);
        Assert.Equal(ChatTemplateErrorKind.Syntax, error.Kind);
        Assert.Equal(line, error.Line);
        Assert.Equal(column, error.Column);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.StartsWith($"Chat template syntax error at line {line}, column {column}: ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DeeplyNestedExpressionsAreRejectedNotOverflowed()
    {
        var error = ParseFails("{{ " + new string('(', 5000) + "1" + new string(')', 5000) + " }}");
        Assert.Contains("nests too deeply", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RunawayTemplatesAreStopped()
    {
        Assert.Contains("Range too big", RenderFails("{{ range(1000000)|length }}").Message, StringComparison.Ordinal);
        Assert.Contains("nest too deeply", RenderFails("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").Message, StringComparison.Ordinal);
        Assert.Contains("too large", RenderFails(
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}").Message, StringComparison.Ordinal);
        Assert.Contains("too large", RenderFails("{{ 'abc' * 100000000 }}").Message, StringComparison.Ordinal);
        Assert.Contains("ran too long", RenderFails(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MutatingMethodsAreRefusedLikeTheSandbox() =>
        Assert.Equal("access to attribute 'append' of 'list' object is unsafe.",
            RenderFails("{% set l = [] %}{{ l.append(1) }}").Detail);
}
