using System.Text;
using System.Text.Json;
using CsCheck;
using TuneGateway.Engine.Structured;

namespace TuneGateway.Tests.Structured;

/// <summary>
/// Property: for generated schemas (every supported keyword, nested), random logits over the tiny
/// model's real vocabulary never end with end-of-sequence on an output that fails JSON Schema
/// validation by an independent validator.
/// </summary>
public sealed class ConstrainedDecodingPropertyTests
{
    private static readonly StructuredOutputs s_outputs = ConstrainedDecodingTests.OutputsFor(ConstrainedDecodingTests.Tiny);

    [Fact]
    public void Every_output_finished_by_end_of_sequence_validates()
    {
        int finished = 0, runs = 0;
        Gen.Int[0, int.MaxValue].Sample(seed =>
        {
            var random = new Random(seed);
            string schema = Schema(random, 0);
            using var doc = JsonDocument.Parse(schema);
            var grammar = s_outputs.Compile(new GrammarPart.Json(doc.RootElement.Clone()));
            for (int run = 0; run < 3; run++)
            {
                var result = new RandomDecoder(ConstrainedDecodingTests.Tiny, s_outputs, random.Next()).Run(grammar, maxSteps: 250);
                Interlocked.Increment(ref runs);
                if (!result.EndedWithEos) continue;
                Interlocked.Increment(ref finished);
                Assert.True(result.Complete, $"End-of-sequence before the output was complete (a dead end) for {schema}: {result.Text}");
                RandomDecoder.AssertValid(schema, result.Text);
            }
        }, iter: 60, threads: 1);
        Assert.True(finished * 3 >= runs, $"Only {finished} of {runs} runs finished; too few to show the property.");
    }

    private static readonly string[] s_names = ["a", "id", "name", "x y", "é", "list"];

    /// <summary>A random schema; deeper levels lean towards scalars so that outputs stay short.</summary>
    internal static string Schema(Random random, int depth)
    {
        int kinds = depth >= 2 ? 7 : 11;
        return random.Next(kinds) switch
        {
            0 => random.Next(2) == 0 ? """{"type":"string"}""" : $$"""{"type":"string","minLength":{{random.Next(3)}},"maxLength":{{3 + random.Next(4)}}}""",
            1 => """{"type":"integer"}""",
            2 => """{"type":"number"}""",
            3 => """{"type":"boolean"}""",
            4 => """{"type":"null"}""",
            5 => """{"enum":["red","green",7,null,{"k":true}]}""",
            6 => $$"""{"const":{{(random.Next(2) == 0 ? "\"fixed\"" : "[1,2]")}}}""",
            7 => ObjectSchema(random, depth),
            8 => $$"""{"type":"array","items":{{Schema(random, depth + 1)}},"minItems":{{random.Next(2)}},"maxItems":{{2 + random.Next(2)}}}""",
            9 => $$"""{"anyOf":[{{Schema(random, depth + 1)}},{{Schema(random, depth + 1)}}]}""",
            // $defs only at the root: "#/$defs/..." resolves against the whole document.
            _ when depth > 0 => ObjectSchema(random, depth),
            _ => """{"$defs":{"inner":""" + Schema(random, depth + 1) + """},"type":"object","properties":{"r":{"$ref":"#/$defs/inner"}},"required":["r"],"additionalProperties":false}""",
        };
    }

    private static string ObjectSchema(Random random, int depth)
    {
        var names = s_names.OrderBy(_ => random.Next()).Take(1 + random.Next(3)).ToArray();
        var properties = new StringBuilder();
        foreach (string name in names) properties.Append(properties.Length > 0 ? "," : "").Append(JsonSerializer.Serialize(name)).Append(':').Append(Schema(random, depth + 1));
        string required = string.Join(",", names.Where(_ => random.Next(2) == 0).Select(n => JsonSerializer.Serialize(n)));
        string additional = random.Next(3) switch { 0 => "false", 1 => "true", _ => """{"type":"integer"}""" };
        return $$"""{"type":"object","properties":{{{properties}}},"required":[{{required}}],"additionalProperties":{{additional}}}""";
    }
}
