using System.Text;
using System.Text.Json;
using TuneGateway.Engine.Structured;
using TuneGateway.Worker.Tools;
using TuneGateway.Tests.Structured;

namespace TuneGateway.Tests.Tools;

public sealed class ToolCallParserTests
{
    private const string Args = """{"city": "Paris", "days": [1, 2], "note": "a \"}\" inside"}""";

    /// <summary>Literal outputs in each format: (parser, output, content, calls as name→arguments).</summary>
    public static TheoryData<string, string, string?, string[]> Outputs => new()
    {
        { "hermes", $"<tool_call>\n{{\"name\": \"weather\", \"arguments\": {Args}}}\n</tool_call>", null, [$"weather {Args}"] },
        { "hermes", $"Let me look.\n<tool_call>\n{{\"name\": \"weather\", \"arguments\": {Args}}}\n</tool_call>\n<tool_call>\n{{\"name\": \"time\", \"arguments\": {{}}}}\n</tool_call>",
            "Let me look.\n", [$"weather {Args}", "time {}"] },
        { "hermes", "No tools needed.", "No tools needed.", [] },
        { "hermes", "<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \n</tool_call>", "<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \n</tool_call>", [] },
        { "llama3_json", $"{{\"name\": \"weather\", \"parameters\": {Args}}}", null, [$"weather {Args}"] },
        { "llama3_json", $"<|python_tag|>{{\"name\": \"weather\", \"parameters\": {Args}}}; {{\"name\": \"time\", \"parameters\": {{\"tz\": \"UTC\"}}}}", null, [$"weather {Args}", "time {\"tz\": \"UTC\"}"] },
        { "llama3_json", "The answer is {\"a\": 1}", "The answer is {\"a\": 1}", [] },
        { "mistral", $"[TOOL_CALLS][{{\"name\": \"weather\", \"arguments\": {Args}}}, {{\"name\": \"time\", \"arguments\": {{}}}}]", null, [$"weather {Args}", "time {}"] },
        { "mistral", "Sure. [TOOL_CALLS] [{\"name\": \"time\"}]", "Sure. ", ["time {}"] },
        { "mistral", "Plain text.", "Plain text.", [] },
    };

    [Theory]
    [MemberData(nameof(Outputs))]
    public void Each_format_reads_its_calls_and_the_content_before_them(string parser, string output, string? content, string[] calls)
    {
        var (readContent, readCalls) = ToolCallFormat.ByName(parser)!.Parse(output);
        Assert.Equal(content, readContent);
        Assert.Equal(calls, readCalls.Select(c => $"{c.Name} {c.Arguments}"));
    }

    [Theory]
    [MemberData(nameof(Outputs))]
    public void Streamed_deltas_add_up_to_the_whole_answer_however_the_text_is_cut(string parser, string output, string? content, string[] calls)
    {
        var format = ToolCallFormat.ByName(parser)!;
        foreach (int size in new[] { 1, 2, 3, 7, output.Length })
        {
            var stream = new ToolCallStream(format);
            var streamedContent = new StringBuilder();
            var names = new Dictionary<int, string>();
            var arguments = new Dictionary<int, StringBuilder>();
            for (int at = 0; at < output.Length; at += size)
            {
                string piece = output.Substring(at, Math.Min(size, output.Length - at));
                bool final = at + size >= output.Length;
                var (text, deltas) = stream.Append(piece, final);
                streamedContent.Append(text);
                foreach (var delta in deltas)
                {
                    if (delta.Id is not null)
                    {
                        // The first delta of a call names it, with empty arguments, as OpenAI streams.
                        Assert.False(names.ContainsKey(delta.Index));
                        Assert.Equal("function", delta.Type);
                        names[delta.Index] = delta.Function.Name!;
                        arguments[delta.Index] = new StringBuilder(delta.Function.Arguments);
                    }
                    else
                    {
                        Assert.Null(delta.Function.Name);
                        arguments[delta.Index].Append(delta.Function.Arguments);
                    }
                }
            }
            if (calls.Length > 0)
            {
                Assert.Equal(calls, names.OrderBy(n => n.Key).Select(n => $"{n.Value} {arguments[n.Key]}"));
                Assert.Equal(content ?? "", streamedContent.ToString());
            }
            else if (names.Count == 0)
            {
                Assert.Equal(output, streamedContent.ToString());
            }
        }
    }

    private static readonly ToolFunction[] s_functions =
    [
        new("weather", JsonDocument.Parse("""{"type":"object","properties":{"city":{"type":"string","maxLength":10},"days":{"type":"integer"}},"required":["city"],"additionalProperties":false}""").RootElement.Clone()),
        new("time", JsonDocument.Parse("""{"type":"object","properties":{"tz":{"enum":["UTC","CET"]}},"additionalProperties":false}""").RootElement.Clone()),
    ];

    [Theory]
    [InlineData("hermes", true)]
    [InlineData("hermes", false)]
    [InlineData("llama3_json", true)]
    [InlineData("mistral", true)]
    [InlineData("mistral", false)]
    public void Forced_calls_from_random_logits_parse_into_valid_calls(string parser, bool parallel)
    {
        var format = ToolCallFormat.ByName(parser)!;
        var outputs = ConstrainedDecodingTests.OutputsFor(ConstrainedDecodingTests.Tiny);
        var grammar = outputs.Compile(format.Calls(s_functions, parallel));
        int finished = 0;
        for (int seed = 0; seed < 16; seed++)
        {
            var result = new RandomDecoder(ConstrainedDecodingTests.Tiny, outputs, seed).Run(grammar, maxSteps: 300);
            if (!result.EndedWithEos) continue;
            finished++;
            var (_, calls) = format.Parse(result.Text);
            Assert.True(calls.Count >= 1, $"No call read from: {result.Text}");
            if (!parallel) Assert.Single(calls);
            foreach (var call in calls)
            {
                var function = Assert.Single(s_functions, f => f.Name == call.Name);
                RandomDecoder.AssertValid(function.Parameters.GetRawText(), call.Arguments);
            }
        }
        Assert.True(finished >= 4, $"Only {finished} of 16 runs finished.");
    }
}
