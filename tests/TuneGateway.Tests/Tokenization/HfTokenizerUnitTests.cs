using System.Text.Json.Nodes;
using TuneGateway.Engine.Tokenization;
using static TuneGateway.Tests.Tokenization.SyntheticTokenizer;

namespace TuneGateway.Tests.Tokenization;

/// <summary>
/// Behaviours the reference fixtures do not reach, on small hand-made tokenizers whose expected
/// ids follow from HF's documented rules.
/// </summary>
public sealed class HfTokenizerUnitTests : IDisposable
{
    private readonly SyntheticTokenizer _files = new();

    public void Dispose() => _files.Dispose();

    private int[] Ids(HfTokenizer tokenizer, params string[] tokens) =>
        tokens.Select(t => tokenizer.TokenToId(t) ?? throw new ArgumentException($"no token {t}")).ToArray();

    [Fact]
    public void IgnoreMergesEmitsAWholeVocabularyWord()
    {
        string[] vocab = ["a", "b", "c", "bc", "abc"];
        HfTokenizer merging = _files.Load(Tokenizer(Bpe(vocab, ["b c"])));
        Assert.Equal(Ids(merging, "a", "bc"), merging.Encode("abc"));

        HfTokenizer ignoring = _files.Load(Tokenizer(Bpe(vocab, ["b c"], m => m["ignore_merges"] = true)));
        Assert.Equal(Ids(ignoring, "abc"), ignoring.Encode("abc"));
        Assert.Equal(Ids(ignoring, "a", "bc", "a"), ignoring.Encode("abca"));
    }

    [Fact]
    public void MergeRankOrderDecides()
    {
        string[] vocab = ["a", "b", "c", "ab", "bc"];
        HfTokenizer bcFirst = _files.Load(Tokenizer(Bpe(vocab, ["b c", "a b"])));
        Assert.Equal(Ids(bcFirst, "a", "bc"), bcFirst.Encode("abc"));
        HfTokenizer abFirst = _files.Load(Tokenizer(Bpe(vocab, ["a b", "b c"])));
        Assert.Equal(Ids(abFirst, "ab", "c"), abFirst.Encode("abc"));
    }

    [Fact]
    public void MergesAsPairsEqualMergesAsStrings()
    {
        string[] vocab = ["a", "b", "c", "ab", "abc"];
        HfTokenizer strings = _files.Load(Tokenizer(Bpe(vocab, ["a b", "ab c"])));
        JsonObject pairsModel = Bpe(vocab);
        pairsModel["merges"] = new JsonArray(new JsonArray("a", "b"), new JsonArray("ab", "c"));
        HfTokenizer pairs = _files.Load(Tokenizer(pairsModel));
        Assert.Equal(Ids(strings, "abc", "ab"), strings.Encode("abcab"));
        Assert.Equal(strings.Encode("abcabcab"), pairs.Encode("abcabcab"));
    }

    [Fact]
    public void UnknownCharactersUseUnkTokenFusedOrNot()
    {
        string[] vocab = ["a", "<unk>"];
        HfTokenizer separate = _files.Load(Tokenizer(Bpe(vocab, configure: m => m["unk_token"] = "<unk>")));
        Assert.Equal([0, 1, 1, 0], separate.Encode("axya"));
        HfTokenizer fused = _files.Load(Tokenizer(Bpe(vocab, configure: m =>
        {
            m["unk_token"] = "<unk>";
            m["fuse_unk"] = true;
        })));
        Assert.Equal([0, 1, 0], fused.Encode("axya"));
        HfTokenizer none = _files.Load(Tokenizer(Bpe(vocab)));
        Assert.Equal([0, 0], none.Encode("axya"));
    }

    [Fact]
    public void ByteFallbackUsesUnkWhenAByteTokenIsMissing()
    {
        var vocab = new List<string> { "<unk>", "a" };
        vocab.AddRange(Enumerable.Range(0, 256).Where(b => b != 0xE4).Select(b => $"<0x{b:X2}>"));
        HfTokenizer tokenizer = _files.Load(Tokenizer(Bpe(vocab, configure: m =>
        {
            m["unk_token"] = "<unk>";
            m["byte_fallback"] = true;
        })));
        Assert.Equal(Ids(tokenizer, "a", "<0xC3>", "<0xA9>", "a"), tokenizer.Encode("aéa"));
        Assert.Equal(Ids(tokenizer, "a", "<unk>", "a"), tokenizer.Encode("a你a")); // 你 = E4 BD A0
    }

    [Fact]
    public void ByteFallbackMergesInsideKnownRunsOnly()
    {
        var vocab = new List<string> { "<unk>", "a", "b", "ab" };
        vocab.AddRange(Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>"));
        HfTokenizer tokenizer = _files.Load(Tokenizer(Bpe(vocab, ["a b"], m =>
        {
            m["unk_token"] = "<unk>";
            m["byte_fallback"] = true;
        })));
        Assert.Equal(Ids(tokenizer, "ab", "<0xC3>", "<0xA9>", "ab", "a"), tokenizer.Encode("abéaba"));
    }

    [Fact]
    public void MergeOnAByteTokenIsRejectedAtLoad()
    {
        var vocab = new List<string> { "<unk>", "a", "<0x41>a" };
        vocab.AddRange(Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>"));
        var e = Assert.Throws<TokenizerLoadException>(() => _files.Load(Tokenizer(Bpe(vocab, ["<0x41> a"], m =>
        {
            m["unk_token"] = "<unk>";
            m["byte_fallback"] = true;
        }))));
        Assert.Equal("model.merges", e.Field);
        Assert.Contains(_files.TokenizerPath, e.Message);
    }

    [Fact]
    public void AddedTokenLstripAndRstripSwallowWhiteSpace()
    {
        string[] vocab = ["h", "i", " ", "x"];
        HfTokenizer lstrip = _files.Load(Tokenizer(Bpe(vocab), added: [Added(10, "<m>", lstrip: true)]));
        Assert.Equal([.. lstrip.Encode("hi"), 10, .. lstrip.Encode(" x")], lstrip.Encode("hi  <m> x"));

        HfTokenizer rstrip = _files.Load(Tokenizer(Bpe(vocab), added: [Added(10, "<m>", rstrip: true)]));
        Assert.Equal([.. rstrip.Encode("hi  "), 10, .. rstrip.Encode("x")], rstrip.Encode("hi  <m> x"));

        HfTokenizer plain = _files.Load(Tokenizer(Bpe(vocab), added: [Added(10, "<m>")]));
        Assert.Equal([.. plain.Encode("hi  "), 10, .. plain.Encode(" x")], plain.Encode("hi  <m> x"));
    }

    [Fact]
    public void SingleWordAddedTokenMatchesOnlyOutsideWords()
    {
        string[] vocab = ["a", "b", "c", " ", "_"];
        HfTokenizer tokenizer = _files.Load(Tokenizer(Bpe(vocab), added: [Added(20, "ab", special: false, singleWord: true)]));
        int[] expected = [20, .. tokenizer.Encode(" cab ab_ "), 20];
        Assert.Equal(expected, tokenizer.Encode("ab cab ab_ ab"));
    }

    [Fact]
    public void LongestAddedTokenWinsAtTheSamePosition()
    {
        string[] vocab = ["<", "a", ">", "b"];
        HfTokenizer tokenizer = _files.Load(Tokenizer(Bpe(vocab), added: [Added(30, "<a"), Added(31, "<a>")]));
        Assert.Equal([31, .. tokenizer.Encode("b"), 30, .. tokenizer.Encode("b")], tokenizer.Encode("<a>b<ab"));
    }

    [Fact]
    public void NormalizedAddedTokensMatchNormalizedText()
    {
        string[] vocab = ["a", "q", "▁"];
        var normalizer = new JsonObject
        {
            ["type"] = "Replace",
            ["pattern"] = new JsonObject { ["String"] = " " },
            ["content"] = "▁",
        };
        HfTokenizer normalized = _files.Load(Tokenizer(Bpe(vocab), normalizer, added: [Added(40, "▁q", normalized: true)]));
        Assert.Equal([0, 40], normalized.Encode("a q"));

        HfTokenizer raw = _files.Load(Tokenizer(Bpe(vocab), normalizer.DeepClone(), added: [Added(40, "▁q", normalized: false)]));
        Assert.Equal([0, 2, 1], raw.Encode("a q"));
        Assert.Equal([0, 40], raw.Encode("a▁q"));
    }

    [Fact]
    public void SkipSpecialTokensKeepsNonSpecialAddedTokens()
    {
        HfTokenizer tokenizer = _files.Load(Tokenizer(Bpe(["a"]), added: [Added(5, "<s>"), Added(6, "<tool>", special: false)]));
        Assert.True(tokenizer.IsSpecial(5));
        Assert.False(tokenizer.IsSpecial(6));
        Assert.False(tokenizer.IsSpecial(0));
        Assert.Equal("<s>a<tool>", tokenizer.Decode([5, 0, 6]));
        Assert.Equal("a<tool>", tokenizer.Decode([5, 0, 6], skipSpecialTokens: true));
        Assert.Equal(7, tokenizer.VocabSize);
        Assert.Equal("a", tokenizer.Decode([0, 99, -1]));
    }

    [Fact]
    public void MetaspaceSplitKeepsMergesInsideWords()
    {
        string[] vocab = ["▁", "h", "e", "l", "o", "w", "r", "d", "o▁"];
        JsonObject Metaspace(bool split) => new()
        {
            ["type"] = "Metaspace",
            ["replacement"] = "▁",
            ["prepend_scheme"] = "always",
            ["split"] = split,
        };
        HfTokenizer whole = _files.Load(Tokenizer(Bpe(vocab, ["o ▁"]), preTokenizer: Metaspace(false)));
        Assert.Equal(Ids(whole, "▁", "h", "e", "l", "l", "o▁", "w", "o", "r", "l", "d"), whole.Encode("hello world"));
        HfTokenizer split = _files.Load(Tokenizer(Bpe(vocab, ["o ▁"]), preTokenizer: Metaspace(true)));
        Assert.Equal(Ids(split, "▁", "h", "e", "l", "l", "o", "▁", "w", "o", "r", "l", "d"), split.Encode("hello world"));
    }

    [Theory]
    [InlineData(true, null, true, new[] { 1, 3 })]
    [InlineData(false, null, true, new[] { 3 })]
    [InlineData(null, true, false, new[] { 3, 2 })]
    [InlineData(null, null, true, new[] { 1, 3 })]
    [InlineData(null, null, false, new[] { 3 })]
    public void TokenizerConfigAddBosAndEosOverrideTheTemplate(bool? addBos, bool? addEos, bool templateHasBos, int[] expected)
    {
        string[] vocab = ["<unk>", "<s>", "</s>", "a"];
        JsonNode? template = templateHasBos
            ? JsonNode.Parse("""
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
                """)
            : null;
        var config = new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = new JsonObject { ["content"] = "</s>" } };
        if (addBos is { } bos)
        {
            config["add_bos_token"] = bos;
        }

        if (addEos is { } eos)
        {
            config["add_eos_token"] = eos;
        }

        HfTokenizer tokenizer = _files.Load(Tokenizer(Bpe(vocab), postProcessor: template,
            added: [Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>")]), config);
        Assert.Equal(expected, tokenizer.Encode("a", addSpecialTokens: true));
        Assert.Equal([3], tokenizer.Encode("a"));
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
        Assert.Null(tokenizer.PadTokenId);
    }

    [Fact]
    public void SpecialTokenIdsComeFromTokenizerConfig()
    {
        HfTokenizer llama2 = HfTokenizer.FromDirectory(TokenizerFixtures.FamilyDirectory("sp-bpe-llama2"));
        Assert.Equal((1, 2, 0), (llama2.BosTokenId, llama2.EosTokenId, llama2.UnkTokenId));
        Assert.Null(llama2.PadTokenId);
        HfTokenizer qwen = HfTokenizer.FromDirectory(TokenizerFixtures.FamilyDirectory("qwen2-bpe"));
        Assert.Null(qwen.BosTokenId);
        Assert.Equal(qwen.TokenToId("<|endoftext|>"), qwen.EosTokenId);
        Assert.Null(qwen.UnkTokenId);
    }

    [Theory]
    [MemberData(nameof(TokenizerFixtures.FamilyNames), MemberType = typeof(TokenizerFixtures))]
    public void VocabSizeAndTokenLookupsAgreeWithTheFile(string name)
    {
        string path = Path.Combine(TokenizerFixtures.FamilyDirectory(name), "tokenizer.json");
        JsonNode root = JsonNode.Parse(File.ReadAllText(path))!;
        var vocab = root["model"]!["vocab"]!.AsObject().Select(p => (p.Key, Id: p.Value!.GetValue<int>())).ToList();
        var added = root["added_tokens"]!.AsArray().Select(t => (Key: t!["content"]!.GetValue<string>(), Id: t["id"]!.GetValue<int>())).ToList();
        HfTokenizer tokenizer = HfTokenizer.FromFiles(path, null);
        Assert.Equal(vocab.Concat(added).Max(e => e.Id) + 1, tokenizer.VocabSize);
        foreach ((string token, int id) in vocab.Concat(added))
        {
            Assert.Equal(id, tokenizer.TokenToId(token));
            Assert.Equal(token, tokenizer.IdToToken(id));
        }

        Assert.Null(tokenizer.TokenToId("no such token \u0001"));
        Assert.Null(tokenizer.IdToToken(tokenizer.VocabSize));
    }

    [Theory]
    [InlineData("llama3-bpe")]
    [InlineData("qwen2-bpe")]
    [InlineData("sp-bpe-llama2")]
    public void LongPromptsRoundTrip(string name)
    {
        HfTokenizer tokenizer = HfTokenizer.FromDirectory(TokenizerFixtures.FamilyDirectory(name));
        var text = new System.Text.StringBuilder();
        while (text.Length < 8_000)
        {
            text.Append("The quick brown fox, 123 jumps; über 你好 😀 naïve\tcafé.\n");
        }

        text.Append(new string('z', 3_000)); // one long word: merges must not go quadratic
        IReadOnlyList<int> ids = tokenizer.Encode(text.ToString());
        Assert.Equal(text.ToString(), tokenizer.Decode(ids));
        Assert.Equal(ids, tokenizer.Encode(text.ToString())); // cached pre-tokens give the same ids
    }

    [Fact]
    public void LoneSurrogatesAreReadAsReplacementCharacters()
    {
        HfTokenizer tokenizer = HfTokenizer.FromDirectory(TokenizerFixtures.FamilyDirectory("llama3-bpe"));
        Assert.Equal(tokenizer.Encode("a\uFFFDb\uFFFD"), tokenizer.Encode("a\uD800b\uDC00"));
    }
}
