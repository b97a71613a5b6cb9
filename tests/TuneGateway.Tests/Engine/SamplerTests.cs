using TorchSharp;
using TuneGateway.Engine.Inference;

namespace TuneGateway.Tests.Engine;

/// <summary>The sampler's logits processing on hand-made logits: repetition penalty, banned tokens, min-p.</summary>
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
}
