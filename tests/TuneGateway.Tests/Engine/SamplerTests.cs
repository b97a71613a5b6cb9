using TorchSharp;
using TuneGateway.Engine.Inference;

namespace TuneGateway.Tests.Engine;

/// <summary>
/// The sampler's logits processing on hand-made logits: penalties, logit bias, banned tokens, min-p,
/// and rows of different settings sharing one batch without affecting each other.
/// </summary>
public sealed class SamplerTests
{
    private static int Pick(float[] logits, RowSampling row)
    {
        using var tensor = torch.tensor(logits).unsqueeze(0);
        return Sampler.Sample(tensor, [row])[0].TokenId;
    }

    private static readonly RowSampling Greedy = new(0, 0, 1, 0, 0);

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfSeenTokens()
    {
        Assert.Equal(0, Pick([2.0f, -1f, 1.5f], Greedy));
        // 2 / 2 = 1 < 1.5: the seen token loses its lead.
        Assert.Equal(2, Pick([2.0f, -1f, 1.5f], Greedy with { RepetitionPenalty = 2, Tokens = [0] }));
        // A penalty that does not overturn the order changes nothing.
        Assert.Equal(0, Pick([2.0f, -1f, 1.5f], Greedy with { RepetitionPenalty = 1.2, Tokens = [0] }));
        // Negative logits are multiplied: -1 * 2 = -2 < -1.5.
        Assert.Equal(2, Pick([-1f, -3f, -1.5f], Greedy with { RepetitionPenalty = 2, Tokens = [0] }));
        // Unseen tokens keep their logits.
        Assert.Equal(0, Pick([-1f, -3f, -1.5f], Greedy with { RepetitionPenalty = 2, Tokens = [1] }));
    }

    [Fact]
    public void BannedTokensAreNeverPicked()
    {
        Assert.Equal(2, Pick([5f, 1f, 3f], Greedy with { Banned = [0] }));
        Assert.Equal(1, Pick([5f, 1f, 3f], Greedy with { Banned = [0, 2] }));
    }

    [Fact]
    public void MinPKeepsOnlyTokensNearTheMostLikely()
    {
        float[] logits = [1f, 1f, 1.2f, 1f];
        // A late uniform draw picks the last token without min_p...
        var sampled = new RowSampling(1, 0, 1, 0, 0.99);
        Assert.Equal(3, Pick(logits, sampled));
        // ...and the most likely one when min_p = 1 leaves nothing else.
        Assert.Equal(2, Pick(logits, sampled with { MinP = 1 }));
        // min_p = 0.5 keeps tokens with at least half the top probability: all four here (e^-0.2 ≈ 0.82).
        Assert.Equal(3, Pick(logits, sampled with { MinP = 0.5 }));
    }

    [Fact]
    public void LogprobsAreThoseOfTheRawDistribution()
    {
        using var tensor = torch.tensor(new[] { 2.0f, -1f, 1.5f }).unsqueeze(0);
        var raw = Sampler.Sample(tensor, [Greedy with { Banned = [0] }])[0];
        using var expected = tensor.log_softmax(-1);
        Assert.Equal(2, raw.TokenId);
        Assert.Equal(expected[0, 2].item<float>(), raw.Logprob, 5);
    }

    [Fact]
    public void FrequencyAndPresencePenaltiesSubtractFromTokensInTheOutput()
    {
        float[] logits = [3f, 2.5f, 1f];
        // Token 0 twice in the output: 3 - 2·0.3 = 2.4 < 2.5.
        Assert.Equal(1, Pick(logits, Greedy with { FrequencyPenalty = 0.3, Tokens = [0, 0] }));
        // 3 - 2·0.2 = 2.6 still leads.
        Assert.Equal(0, Pick(logits, Greedy with { FrequencyPenalty = 0.2, Tokens = [0, 0] }));
        // Presence counts once whatever the count: 3 - 0.6 = 2.4; 3 - 0.4 = 2.6.
        Assert.Equal(1, Pick(logits, Greedy with { PresencePenalty = 0.6, Tokens = [0, 0, 0] }));
        Assert.Equal(0, Pick(logits, Greedy with { PresencePenalty = 0.4, Tokens = [0, 0, 0] }));
        // Prompt tokens do not count (OpenAI's penalties are over the output).
        Assert.Equal(0, Pick(logits, Greedy with { FrequencyPenalty = 2, PresencePenalty = 2, Tokens = [0, 0], PromptLength = 2 }));
        // A negative penalty favours repeating: token 2 seen once, 1 + 2.1 = 3.1 > 3.
        Assert.Equal(2, Pick(logits, Greedy with { PresencePenalty = -2.1, Tokens = [2] }));
    }

    [Fact]
    public void LogitBiasIsAddedToTheLogits()
    {
        float[] logits = [1f, 2f, 3f];
        Assert.Equal(0, Pick(logits, Greedy with { LogitBias = new Dictionary<int, float> { [0] = 2.5f } }));
        Assert.Equal(2, Pick(logits, Greedy with { LogitBias = new Dictionary<int, float> { [0] = 1.5f } }));
        Assert.Equal(1, Pick(logits, Greedy with { LogitBias = new Dictionary<int, float> { [2] = -100f } }));
        // A banned token stays banned whatever its bias.
        Assert.Equal(2, Pick(logits, Greedy with { LogitBias = new Dictionary<int, float> { [0] = 100f }, Banned = [0] }));
    }

    [Fact]
    public void EachRowOfAMixedBatchIsSampledAsIfAlone()
    {
        // Rows with different processors and filters in one batch: each must get exactly what it gets alone
        // (the batched tensors carry neutral values for rows that do not use a processor).
        var generator = new Random(5);
        int vocab = 64;
        RowSampling[] rows =
        [
            Greedy,
            Greedy with { FrequencyPenalty = 1.5, PresencePenalty = 0.5, Tokens = [1, 2, 3, 3, 3], PromptLength = 2 },
            new(0.8, 10, 1, 3, 0.37),
            new RowSampling(1.2, 0, 0.9, 0, 0.81) with { RepetitionPenalty = 1.7, Tokens = [5, 6, 7], LogitBias = new Dictionary<int, float> { [9] = 4f }, Banned = [0, 1] },
            new RowSampling(1, 0, 1, 2, 0.5) with { MinP = 0.2, PresencePenalty = -1, Tokens = [4, 4], PromptLength = 0 },
        ];
        var logits = Enumerable.Range(0, rows.Length).Select(_ => Enumerable.Range(0, vocab).Select(_ => (float)(generator.NextDouble() * 6 - 3)).ToArray()).ToArray();
        using var batch = torch.tensor(logits.SelectMany(r => r).ToArray()).view(rows.Length, vocab);
        var together = Sampler.Sample(batch, rows);
        for (int i = 0; i < rows.Length; i++)
        {
            using var alone = torch.tensor(logits[i]).unsqueeze(0);
            var single = Sampler.Sample(alone, [rows[i]])[0];
            Assert.Equal(single.TokenId, together[i].TokenId);
            Assert.Equal(single.Logprob, together[i].Logprob, 5);
            Assert.Equal(single.TopLogprobs?.Select(t => t.TokenId), together[i].TopLogprobs?.Select(t => t.TokenId));
        }
        // And the mask acted in the batch: row 3 never picks its banned tokens.
        Assert.DoesNotContain(together[3].TokenId, new[] { 0, 1 });
    }

    /// <summary>
    /// Logits [1, 3, 2, 0] and a late draw (0.999), which picks the last kept token in vocabulary order:
    /// token 3 unfiltered; top_k 2 keeps tokens 1 and 2, top_k 1 token 1; token 1 holds about 0.64 of
    /// the mass, so top_p 0.5 keeps it alone and top_p 0.7 adds token 2.
    /// </summary>
    [Theory]
    [InlineData(0, 1.0, 3)]
    [InlineData(2, 1.0, 2)]
    [InlineData(1, 1.0, 1)]
    [InlineData(0, 0.5, 1)]
    [InlineData(0, 0.7, 2)]
    public void TopKAndTopPKeepOnlyTheMostLikelyTokens(int topK, double topP, int expected) =>
        Assert.Equal(expected, Pick([1f, 3f, 2f, 0f], new RowSampling(1, topK, topP, 0, 0.999)));
}
