using System.Text.Json;
using TuneGateway.Engine.Tokenization;
using TuneGateway.Engine.Tokenization.Unicode;

namespace TuneGateway.Tests.Tokenization;

/// <summary>The internal building blocks, checked against facts of HF's and Unicode's definitions.</summary>
public class TokenizerComponentTests
{
    private const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static List<string> Matches(string pattern, string text)
    {
        var matches = new List<(int Start, int Length)>();
        new CodePointRegex(pattern, isRegex: true).FindMatches(text, matches);
        return matches.Select(m => text.Substring(m.Start, m.Length)).ToList();
    }

    [Fact]
    public void RegexMatchesCodePointsNotUtf16Units()
    {
        // Oniguruma sees 😀 as one non-letter code point, so "[^\r\n\p{L}\p{N}]?\p{L}+" takes it with the word.
        Assert.Equal(["😀abc", " x", "😀!"], Matches(Llama3Pattern, "😀abc x😀!"));
        // 𝔘 (U+1D518) is a letter (Lu) outside the BMP.
        Assert.Equal([" 𝔘x", "!"], Matches(PreTokenizerStep.Gpt2Pattern, " 𝔘x!"));
        // 👍 is So and the skin-tone modifier 🏽 is Sk: categories survive the folding.
        Assert.Equal(["👍", " 𝟏𝟐"], Matches(@"\p{So}+| ?\p{N}+", "👍🏽 𝟏𝟐"));
        Assert.Equal(["👍🏽"], Matches(@"\p{S}+", "👍🏽"));
        Assert.Equal(["Hello", " world", "'S", " ", "123", "4"], Matches(Llama3Pattern, "Hello world'S 1234"));
    }

    private static List<string> SplitWith(string json, string text)
    {
        PreTokenizerStep step = PreTokenizerStep.FromJson(JsonDocument.Parse(json).RootElement, "pre_tokenizer", new JsonFields("t.json"))!;
        var output = new List<TextPiece>();
        step.Split(new TextPiece(text, AtStart: true), output);
        return output.Select(p => p.Text).ToList();
    }

    [Theory]
    [InlineData("Removed", false, new[] { "a", "b", "c" })]
    [InlineData("Isolated", false, new[] { "a", "-", "b", "-", "-", "c" })]
    [InlineData("MergedWithPrevious", false, new[] { "a-", "b-", "-", "c" })]
    [InlineData("MergedWithNext", false, new[] { "a", "-b", "-", "-c" })]
    [InlineData("Contiguous", false, new[] { "a", "-", "b", "--", "c" })]
    [InlineData("Removed", true, new[] { "-", "-", "-" })]
    public void SplitBehavioursFollowHf(string behavior, bool invert, string[] expected)
    {
        string json = $$"""{"type": "Split", "pattern": {"String": "-"}, "behavior": "{{behavior}}", "invert": {{(invert ? "true" : "false")}}}""";
        Assert.Equal(expected, SplitWith(json, "a-b--c"));
    }

    [Fact]
    public void ByteLevelPreTokenizerSplitsWithGpt2RegexAndMapsBytes()
    {
        Assert.Equal(["Hello", "Ġworld", "ĠĠ", "Ġ!", "Ċ"],
            SplitWith("""{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}""", "Hello world   !\n"));
        Assert.Equal(["ĠHi"], SplitWith("""{"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}""", "Hi"));
        Assert.Equal(["Ã©"], SplitWith("""{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}""", "é"));
    }

    [Fact]
    public void DigitsPreTokenizer()
    {
        Assert.Equal(["a", "1", "2", "b"], SplitWith("""{"type": "Digits", "individual_digits": true}""", "a12b"));
        Assert.Equal(["a", "12", "b"], SplitWith("""{"type": "Digits", "individual_digits": false}""", "a12b"));
    }

    [Theory]
    [InlineData("e\u0301", "\u00E9")]
    [InlineData("A\u030A", "\u00C5")]
    [InlineData("\u212B", "\u00C5")] // Angstrom sign: singleton decomposition
    [InlineData("e\u0302\u0323", "\u1EC7")] // marks in non-canonical order
    [InlineData("e\u0323\u0302", "\u1EC7")]
    [InlineData("\u1100\u1161\u11A8", "\uAC01")] // Hangul jamo compose algorithmically
    [InlineData("\u0344", "\u0308\u0301")] // composition exclusion
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("😀 naïve", "😀 naïve")]
    public void NfcMatchesUnicode(string input, string expected) =>
        Assert.Equal(expected, UnicodeNormalizer.ToNfc(input));

    [Theory]
    [InlineData("\u00E9", "e\u0301")]
    [InlineData("\uAC01", "\u1100\u1161\u11A8")]
    [InlineData("\u1EC7", "e\u0323\u0302")]
    public void NfdMatchesUnicode(string input, string expected) =>
        Assert.Equal(expected, UnicodeNormalizer.ToNfd(input));

    [Fact]
    public void ByteLevelAlphabetIsABijection()
    {
        var seen = new HashSet<char>();
        for (int b = 0; b < 256; b++)
        {
            char c = ByteLevelAlphabet.ToChar((byte)b);
            Assert.True(seen.Add(c));
            Assert.Equal(b, ByteLevelAlphabet.ToByte(c));
        }

        Assert.Equal('Ġ', ByteLevelAlphabet.ToChar((byte)' '));
        Assert.Equal('Ċ', ByteLevelAlphabet.ToChar((byte)'\n'));
        Assert.Equal('A', ByteLevelAlphabet.ToChar((byte)'A'));
        Assert.Equal(-1, ByteLevelAlphabet.ToByte('€'));
    }
}
