using TuneGateway.Engine.Tokenization;
using TuneGateway.Tests.Engine;

namespace TuneGateway.Tests.Tokenization;

public class IncrementalDecoderTests
{
    public static TheoryData<string> AllFixtures
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (string name in TokenizerFixtures.FamilyNameList)
            {
                data.Add(name);
            }

            data.Add("llama-tiny");
            return data;
        }
    }

    private static HfTokenizer Load(string fixture) =>
        HfTokenizer.FromDirectory(fixture == "llama-tiny" ? Fixtures.LlamaTiny : TokenizerFixtures.FamilyDirectory(fixture));

    private static IReadOnlyList<TokenizerSample> Samples(string fixture) =>
        fixture == "llama-tiny" ? TokenizerFixtures.LlamaTinySamples() : TokenizerFixtures.FamilySamples(fixture);

    /// <summary>Feeds ids one at a time; returns the pieces (Flush last).</summary>
    private static List<string> Stream(HfTokenizer tokenizer, IEnumerable<int> ids, bool skip, IReadOnlyList<int>? prompt = null)
    {
        IncrementalDecoder decoder = tokenizer.CreateIncrementalDecoder(skip, prompt);
        var pieces = ids.Select(decoder.Append).ToList();
        pieces.Add(decoder.Flush());
        return pieces;
    }

    private static bool HasLoneSurrogate(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(text[i]))
            {
                return true;
            }
        }

        return false;
    }

    [Theory]
    [MemberData(nameof(AllFixtures))]
    public void StreamingEveryFixtureSampleAddsUpToDecode(string fixture)
    {
        HfTokenizer tokenizer = Load(fixture);
        var failures = new List<string>();
        foreach (TokenizerSample sample in Samples(fixture))
        {
            foreach ((int[] ids, bool skip) in new[] { (sample.Ids, false), (sample.IdsWithSpecial ?? sample.Ids, true) })
            {
                string expected = tokenizer.Decode(ids, skip);
                List<string> pieces = Stream(tokenizer, ids, skip);
                string joined = string.Concat(pieces);
                if (joined != expected)
                {
                    failures.Add($"{TokenizerFixtures.Show(sample.Text)} skip={skip}: streamed {TokenizerFixtures.Show(joined)}, decoded {TokenizerFixtures.Show(expected)}");
                }

                // The fixture texts are valid Unicode: no piece may hold a replacement character or half a pair.
                foreach (string piece in pieces.Where(p => p.Contains('\uFFFD') || HasLoneSurrogate(p)))
                {
                    failures.Add($"{TokenizerFixtures.Show(sample.Text)} skip={skip}: broken piece {TokenizerFixtures.Show(piece)}");
                }
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [InlineData("sp-bpe-llama2")]
    [InlineData("llama3-bpe")]
    public void MultiByteCharactersWaitUntilComplete(string fixture)
    {
        HfTokenizer tokenizer = Load(fixture);
        const string text = "x😀你好👍🏽y";
        IReadOnlyList<int> ids = tokenizer.Encode(text);
        Assert.True(ids.Count > text.Length, "expected the emoji and CJK to be split into byte tokens");

        List<string> pieces = Stream(tokenizer, ids, skip: false);
        Assert.Equal(tokenizer.Decode(ids), string.Concat(pieces));
        Assert.All(pieces, piece => Assert.False(piece.Contains('\uFFFD') || HasLoneSurrogate(piece), TokenizerFixtures.Show(piece)));

        // Every complete character comes out before the stream ends.
        Assert.Equal(string.Empty, pieces[^1]);
    }

    [Fact]
    public void ByteFallbackRunIsHeldUntilANonByteTokenFollows()
    {
        HfTokenizer tokenizer = Load("sp-bpe-llama2");
        int e4 = tokenizer.TokenToId("<0xE4>")!.Value, bd = tokenizer.TokenToId("<0xBD>")!.Value, a0 = tokenizer.TokenToId("<0xA0>")!.Value;
        int word = tokenizer.Encode("a")[0]; // "▁a"
        IncrementalDecoder decoder = tokenizer.CreateIncrementalDecoder();
        Assert.Equal(string.Empty, decoder.Append(e4));
        Assert.Equal(string.Empty, decoder.Append(bd));
        Assert.Equal(string.Empty, decoder.Append(a0));
        Assert.Equal("你 a", decoder.Append(word));
        Assert.Equal(string.Empty, decoder.Flush());
    }

    [Fact]
    public void InvalidByteFallbackRunFlushesLikeHuggingFace()
    {
        HfTokenizer tokenizer = Load("sp-bpe-llama2");
        // 你 followed by the first byte of 好 and nothing else: HF turns every byte of the run into U+FFFD.
        int[] ids = new[] { "<0xE4>", "<0xBD>", "<0xA0>", "<0xE5>" }.Select(t => tokenizer.TokenToId(t)!.Value).ToArray();
        Assert.Equal("\uFFFD\uFFFD\uFFFD\uFFFD", tokenizer.Decode(ids));
        List<string> pieces = Stream(tokenizer, ids, skip: false);
        Assert.All(pieces.Take(ids.Length), piece => Assert.Equal(string.Empty, piece));
        Assert.Equal(tokenizer.Decode(ids), string.Concat(pieces));
    }

    [Fact]
    public void TruncatedByteLevelCharacterFlushesAsReplacementCharacter()
    {
        HfTokenizer tokenizer = Load("llama3-bpe");
        IReadOnlyList<int> ids = tokenizer.Encode("ok 😀");
        int[] truncated = ids.Take(ids.Count - 1).ToArray();
        Assert.EndsWith("\uFFFD", tokenizer.Decode(truncated));
        List<string> pieces = Stream(tokenizer, truncated, skip: false);
        Assert.DoesNotContain(pieces.Take(truncated.Length), piece => piece.Contains('\uFFFD'));
        Assert.Equal(tokenizer.Decode(truncated), string.Concat(pieces));
    }

    [Theory]
    [InlineData("sp-bpe-llama2")]
    [InlineData("sp-bpe-metaspace")]
    [InlineData("llama3-bpe")]
    public void PromptContextKeepsTheLeadingSpaceOfTheContinuation(string fixture)
    {
        HfTokenizer tokenizer = Load(fixture);
        IReadOnlyList<int> all = tokenizer.Encode("Hello world and more");
        IReadOnlyList<int> prompt = tokenizer.Encode("Hello");
        Assert.Equal(prompt, all.Take(prompt.Count));
        int[] generated = all.Skip(prompt.Count).ToArray();

        string streamed = string.Concat(Stream(tokenizer, generated, skip: false, prompt));
        Assert.Equal(" world and more", streamed);

        // Without the prompt, the stream is exactly Decode of the generated ids.
        Assert.Equal(tokenizer.Decode(generated), string.Concat(Stream(tokenizer, generated, skip: false)));
    }

    [Fact]
    public void SkippedSpecialTokensDoNotStallTheStream()
    {
        HfTokenizer tokenizer = Load("qwen2-bpe");
        IReadOnlyList<int> ids = tokenizer.Encode("<|im_start|>assistant\nhi there<|im_end|>");
        IncrementalDecoder decoder = tokenizer.CreateIncrementalDecoder(skipSpecialTokens: true);
        string text = string.Concat(ids.Select(decoder.Append)) + decoder.Flush();
        Assert.Equal("assistant\nhi there", text);
    }
}
