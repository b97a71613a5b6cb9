using TuneGateway.Engine.Tokenization;
using TuneGateway.Tests.Engine;

namespace TuneGateway.Tests.Tokenization;

/// <summary>
/// Every sample of every HF reference fixture must give identical ids (with and without special
/// tokens), tokens and decodings. Each test reports all mismatching samples at once.
/// </summary>
public class HfTokenizerReferenceTests
{
    [Theory]
    [MemberData(nameof(TokenizerFixtures.FamilyNames), MemberType = typeof(TokenizerFixtures))]
    public void FamilyFixtureMatchesHuggingFace(string name)
    {
        HfTokenizer tokenizer = HfTokenizer.FromDirectory(TokenizerFixtures.FamilyDirectory(name));
        IReadOnlyList<TokenizerSample> samples = TokenizerFixtures.FamilySamples(name);
        Assert.NotEmpty(samples);
        AssertAllMatch(tokenizer, samples);
    }

    [Fact]
    public void LlamaTinyFixtureMatchesHuggingFace()
    {
        HfTokenizer tokenizer = HfTokenizer.FromDirectory(Fixtures.LlamaTiny);
        IReadOnlyList<TokenizerSample> samples = TokenizerFixtures.LlamaTinySamples();
        Assert.NotEmpty(samples);
        AssertAllMatch(tokenizer, samples);
    }

    private static void AssertAllMatch(HfTokenizer tokenizer, IReadOnlyList<TokenizerSample> samples)
    {
        var failures = new List<string>();
        foreach (TokenizerSample sample in samples)
        {
            string label = TokenizerFixtures.Show(sample.Text);
            Check(failures, label, "ids", TokenizerFixtures.Show(sample.Ids), TokenizerFixtures.Show(tokenizer.Encode(sample.Text)));
            if (sample.IdsWithSpecial is { } withSpecial)
            {
                Check(failures, label, "ids_with_special", TokenizerFixtures.Show(withSpecial),
                    TokenizerFixtures.Show(tokenizer.Encode(sample.Text, addSpecialTokens: true)));
            }

            Check(failures, label, "decoded", TokenizerFixtures.Show(sample.Decoded), TokenizerFixtures.Show(tokenizer.Decode(sample.Ids)));
            if (sample.DecodedSkipSpecial is not null && sample.IdsWithSpecial is not null)
            {
                Check(failures, label, "decoded_skip_special", TokenizerFixtures.Show(sample.DecodedSkipSpecial),
                    TokenizerFixtures.Show(tokenizer.Decode(sample.IdsWithSpecial, skipSpecialTokens: true)));
            }

            if (sample.Tokens is { } tokens)
            {
                Check(failures, label, "tokens", string.Join(" ", tokens.Select(TokenizerFixtures.Show)),
                    string.Join(" ", sample.Ids.Select(id => TokenizerFixtures.Show(tokenizer.IdToToken(id)))));
            }
        }

        Assert.True(failures.Count == 0,
            $"{failures.Count} mismatch(es) over {samples.Count} samples:\n" + string.Join("\n", failures));
    }

    private static void Check(List<string> failures, string label, string what, string expected, string actual)
    {
        if (expected != actual)
        {
            failures.Add($"{label} {what}:\n  expected {expected}\n  actual   {actual}");
        }
    }
}
