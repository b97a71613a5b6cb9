using System.Text;
using System.Text.Json;
using TuneGateway.Engine.Structured;
using TuneGateway.Engine.Tokenization;
using TuneGateway.Tests.Engine;
using TuneGateway.Tests.Tokenization;

namespace TuneGateway.Tests.Structured;

public sealed class ConstrainedDecodingTests
{
    internal static readonly HfTokenizer Tiny = HfTokenizer.FromDirectory(Fixtures.LlamaTiny);

    internal static StructuredOutputs OutputsFor(HfTokenizer tokenizer, StructuredOutputOptions? options = null) =>
        new(() => TokenVocabulary.FromTokenizer(tokenizer, tokenizer.VocabSize, [tokenizer.EosTokenId ?? 0]), options);

    private static readonly StructuredOutputs s_tiny = OutputsFor(Tiny);

    private static CompiledGrammar Schema(string schema, StructuredOutputs? outputs = null)
    {
        using var doc = JsonDocument.Parse(schema);
        return (outputs ?? s_tiny).Compile(new GrammarPart.Json(doc.RootElement.Clone()));
    }

    /// <summary>Schemas covering every supported keyword, with outputs they must accept and refuse.</summary>
    public static TheoryData<string, string, bool> TextCases => new()
    {
        { """{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"],"additionalProperties":false}""", """{"a": -12, "b": "x\"\u00e9"}""", true },
        { """{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"],"additionalProperties":false}""", """{"a":0}""", true },
        { """{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"],"additionalProperties":false}""", """{"b":"x"}""", false },
        { """{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}""", """{"a":1,"c":2}""", false },
        { """{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}""", """{"a":1.5}""", false },
        { """{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}""", """{"a":01}""", false },
        { """{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"boolean"}}""", """{"x":true,"a":3,"y":false}""", true },
        { """{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"boolean"}}""", """{"x":true,"x":false}""", false },
        { """{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"boolean"}}""", """{"x":1}""", false },
        { """{"type":"object"}""", """{"k":[1,{"z":null},"s"],"m":{}}""", true },
        { """{"type":"array","items":{"type":"number"},"minItems":2,"maxItems":3}""", """[1.25, -0.5]""", true },
        { """{"type":"array","items":{"type":"number"},"minItems":2,"maxItems":3}""", """[1]""", false },
        { """{"type":"array","items":{"type":"number"},"minItems":2,"maxItems":3}""", """[1,2,3,4]""", false },
        { """{"type":"array","items":{"type":"number"},"minItems":2,"maxItems":3}""", """[1,2,]""", false },
        { """{"type":"string","minLength":2,"maxLength":4}""", "\"ab\\n\"", true },
        { """{"type":"string","minLength":2,"maxLength":4}""", "\"a\"", false },
        { """{"type":"string","minLength":2,"maxLength":4}""", "\"abcde\"", false },
        { """{"type":"string"}""", "\"\\u00e9\\ud800\"", false },
        { """{"type":"string"}""", "\"tab\there\"", false },
        { """{"enum":["red","green",3,null]}""", "\"green\"", true },
        { """{"enum":["red","green",3,null]}""", "3", true },
        { """{"enum":["red","green",3,null]}""", "\"blue\"", false },
        { """{"const":{"k":[1,2]}}""", """{"k":[1,2]}""", true },
        { """{"type":["string","null"]}""", "null", true },
        { """{"anyOf":[{"type":"boolean"},{"type":"array","items":{"type":"integer"}}]}""", "[1,2]", true },
        { """{"oneOf":[{"type":"boolean"},{"type":"integer"}]}""", "\"x\"", false },
        // Disjoint oneOf: a required discriminator property with different constants, reached through $ref too.
        { """{"$defs":{"cat":{"type":"object","properties":{"kind":{"const":"cat"},"lives":{"type":"integer"}},"required":["kind","lives"],"additionalProperties":false}},"oneOf":[{"$ref":"#/$defs/cat"},{"type":"object","properties":{"kind":{"const":"dog"},"good":{"type":"boolean"}},"required":["kind","good"],"additionalProperties":false},{"enum":["none",null]}]}""",
            """{"kind":"cat","lives":9}""", true },
        { """{"oneOf":[{"enum":["a","b"]},{"const":"c"},{"type":"integer"}]}""", "\"c\"", true },
        { """{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],"additionalProperties":false}},"$ref":"#/$defs/node"}""",
            """{"v":1,"next":{"v":2,"next":null}}""", true },
        { """{"definitions":{"x":{"type":"boolean"}},"type":"object","properties":{"f":{"$ref":"#/definitions/x"}},"required":["f"]}""", """{"f":false}""", true },
        { """{"type":"boolean"}""", "true  ", false },
    };

    [Theory]
    [MemberData(nameof(TextCases))]
    public void The_automaton_accepts_exactly_the_valid_texts(string schema, string text, bool valid)
    {
        var state = Schema(schema).Start();
        state.AcceptText(text);
        Assert.Equal(valid, !state.IsDead && state.IsComplete);
        if (valid) RandomDecoder.AssertValid(schema, text);
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a"}""", "pattern")]
    [InlineData("""{"type":"integer","minimum":3}""", "minimum")]
    [InlineData("""{"type":"string","format":"date-time"}""", "format")]
    [InlineData("""{"type":"array","prefixItems":[{"type":"string"}]}""", "prefixItems")]
    [InlineData("""{"type":"object","patternProperties":{"^x":{}}}""", "patternProperties")]
    [InlineData("""{"$ref":"https://example.com/s.json"}""", "$ref")]
    [InlineData("""{"allOf":[{"type":"string"},{"maxLength":3}]}""", "allOf")]
    [InlineData("""{"type":"object","properties":{"a":{"not":{}}}}""", "not")]
    // oneOf alternatives a value could match twice (decoding them as anyOf could then produce an invalid output).
    [InlineData("""{"oneOf":[{"type":"integer"},{"type":"number"}]}""", "oneOf")]
    [InlineData("""{"oneOf":[{"type":"string"},{"maxLength":3}]}""", "oneOf")]
    [InlineData("""{"oneOf":[{"type":"object","properties":{"a":{"type":"string"}}},{"type":"object","properties":{"b":{"type":"string"}}}]}""", "oneOf")]
    [InlineData("""{"oneOf":[{"enum":["a","b"]},{"enum":["b","c"]}]}""", "oneOf")]
    public void An_unsupported_keyword_is_refused_by_name(string schema, string keyword)
    {
        var error = Assert.Throws<SchemaNotSupportedException>(() => Schema(schema));
        Assert.Equal(keyword, error.Keyword);
        Assert.Contains(keyword, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_duplicate_free_key_is_refused_at_its_closing_quote_not_one_byte_later()
    {
        // Found by the property test: the quote closing a repeated key led into a dead end.
        var state = Schema("""{"type":"object","additionalProperties":true}""").Start();
        state.AcceptText("{\"\":1,\"");
        Assert.False(state.AllowedTokens()[Tiny.TokenToId("\"")!.Value]);
    }

    [Fact]
    public void Token_bytes_cover_byte_level_sentencepiece_and_byte_fallback_pieces()
    {
        var space = Tiny.TokenToId("Ġ")!.Value;
        Assert.Equal(" "u8.ToArray(), Tiny.TokenBytes(space));
        Assert.Null(Tiny.TokenBytes(Tiny.EosTokenId!.Value));
        var sp = HfTokenizer.FromDirectory(TokenizerFixtures.FamilyDirectory("sp-bpe-llama2"));
        Assert.Equal(new byte[] { 0xC3 }, sp.TokenBytes(sp.TokenToId("<0xC3>")!.Value));
        int word = Enumerable.Range(0, sp.VocabSize).First(id => sp.IdToToken(id) is { Length: > 2 } t && t[0] == '▁' && t.Skip(1).All(char.IsAsciiLetter));
        Assert.Equal(Encoding.UTF8.GetBytes(" " + sp.IdToToken(word)![1..]), sp.TokenBytes(word));
    }

    [Fact]
    public void A_character_split_over_byte_tokens_is_checked_byte_by_byte()
    {
        var grammar = Schema("""{"type":"string"}""");
        var state = grammar.Start();
        state.AcceptText("\"");
        // é is C3 A9: the lead byte is allowed, then only a continuation byte, never a quote.
        int lead = Enumerable.Range(0, Tiny.VocabSize).First(id => Tiny.TokenBytes(id) is [0xC3]);
        Assert.True(state.AllowedTokens()[lead]);
        state.Accept(lead);
        var mask = state.AllowedTokens();
        Assert.All(mask.Ids(), id => Assert.InRange(Tiny.TokenBytes(id)![0], 0x80, 0xBF));
        Assert.False(mask[Tiny.TokenToId("\"")!.Value]);
    }

    [Fact]
    public void Whitespace_runs_are_bounded_and_a_complete_value_allows_only_end_of_sequence()
    {
        var options = new StructuredOutputOptions { MaxWhitespace = 3, MaxTrailingWhitespace = 0 };
        var outputs = OutputsFor(Tiny, options);
        var state = Schema("""{"type":"array","items":{"type":"integer"}}""", outputs).Start();
        int space = Tiny.TokenToId("Ġ")!.Value;
        state.AcceptText("[   ");
        Assert.False(state.AllowedTokens()[space]);
        state.AcceptText("1]");
        Assert.Equal([Tiny.EosTokenId!.Value], state.AllowedTokens().Ids());
    }

    [Fact]
    public void Masks_repeat_inside_a_string_and_come_from_the_cache()
    {
        var outputs = OutputsFor(Tiny);
        var grammar = Schema("""{"type":"object","properties":{"s":{"type":"string"}},"required":["s"],"additionalProperties":false}""", outputs);
        var state = grammar.Start();
        state.AcceptText("{\"s\": \"");
        var first = state.AllowedTokens();
        for (int i = 0; i < 5; i++)
        {
            state.AcceptText("ab");
            Assert.Same(first, state.AllowedTokens());
        }
        Assert.True(grammar.CacheCounts.Hits >= 5);
    }

    public static TheoryData<string> Families => new(["llama-tiny", "sp-bpe-llama2", "sp-bpe-metaspace", "qwen2-bpe"]);

    private static HfTokenizer Family(string name) =>
        name == "llama-tiny" ? Tiny : HfTokenizer.FromDirectory(TokenizerFixtures.FamilyDirectory(name));

    private const string Person = """
        {"type":"object","properties":{
          "name":{"type":"string","maxLength":12},
          "age":{"type":"integer"},
          "tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3},
          "address":{"$ref":"#/$defs/address"},
          "note":{"anyOf":[{"type":"string"},{"type":"null"}]}},
         "required":["name","age","address"],"additionalProperties":false,
         "$defs":{"address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string","minLength":2,"maxLength":5}},"required":["city"],"additionalProperties":false}}}
        """;

    [Theory]
    [MemberData(nameof(Families))]
    public void Random_logits_over_a_real_vocabulary_only_finish_with_valid_outputs(string family)
    {
        var tokenizer = Family(family);
        var outputs = OutputsFor(tokenizer);
        int finished = 0;
        foreach (string schema in new[] { Person, """{"type":"object"}""", """{"type":"array","items":{"type":"number"},"minItems":1}""" })
        {
            var grammar = Schema(schema, outputs);
            for (int seed = 0; seed < 12; seed++)
            {
                var result = new RandomDecoder(tokenizer, outputs, seed).Run(grammar, maxSteps: 300, useSampler: seed % 4 == 0);
                if (!result.EndedWithEos) continue;
                Assert.True(result.Complete, $"End-of-sequence was allowed before the value was complete: {result.Text}");
                RandomDecoder.AssertValid(schema, result.Text);
                finished++;
            }
        }
        Assert.True(finished >= 12, $"Only {finished} of 36 random runs finished; the test shows too little.");
    }
}
