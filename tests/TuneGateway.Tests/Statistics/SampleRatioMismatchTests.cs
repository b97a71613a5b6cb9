using TuneGateway.Controller.Statistics;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Statistics;

public class SampleRatioMismatchTests(ITestOutputHelper output)
{
    [Fact]
    public void AnExactSplitIsFine()
    {
        var result = SampleRatioMismatch.Check(18000, 2000, 0.1);
        Assert.Equal(0, result.ChiSquare, 12);
        Assert.Equal(1, result.ChiSquarePValue);
        Assert.Equal(1, result.SequentialPValue);
        Assert.False(result.Mismatch);
        Assert.Equal(0.1, result.ObservedCandidateShare, 15);
    }

    [Fact]
    public void ANinePercentSplitOfTwentyThousandIsAMismatch()
    {
        // X² = 200²/2000 + 200²/18000 = 22.2…, one degree of freedom: p = erfc(√(X²/2)).
        var result = SampleRatioMismatch.Check(18200, 1800, 0.1);
        double x2 = 200.0 * 200 / 2000 + 200.0 * 200 / 18000;
        Approx.Relative(x2, result.ChiSquare, 1e-14);
        Approx.Relative(SpecialFunctions.Erfc(Math.Sqrt(x2 / 2)), result.ChiSquarePValue, 1e-12);
        // ln M = 9.4176… (section "SRM ln M" of tools/stats/reference_values.py): p = e^-9.42 ≈ 8e-5.
        Approx.Relative(Math.Exp(-9.417635761725023), result.SequentialPValue, 1e-8);
        Assert.True(result.Mismatch);
        Assert.True(SampleRatioMismatch.Check(18200, 1800, 0.1, method: SampleRatioMethod.ChiSquare).Mismatch);
    }

    // Section "SRM ln M" of tools/stats/reference_values.py (math.lgamma).
    [Theory]
    [InlineData(18000, 2000, 0.1, 1000, -1.5230636851806594)]
    [InlineData(9000, 1000, 0.1, 1000, -1.1997136268844315)]
    [InlineData(50, 50, 0.5, 1000, -0.047677817165961756)]
    [InlineData(600, 400, 0.5, 100, 17.098940416450603)]
    [InlineData(0, 0, 0.3, 1000, 0.0)]
    public void MixtureLikelihoodRatioMatchesReference(long control, long candidate, double share, double concentration, double expected)
        => Approx.Absolute(expected, SampleRatioMismatch.LogLikelihoodRatio(control, candidate, share, concentration), 1e-8);

    [Fact]
    public void SmallSamplesAreReportedButNotFlagged()
    {
        var result = SampleRatioMismatch.Check(90, 10, 0.5, minimumTotal: 200, method: SampleRatioMethod.ChiSquare);
        Assert.True(result.PValue < 0.001);
        Assert.False(result.Mismatch);
        Assert.False(SampleRatioMismatch.Check(0, 0, 0.1).Mismatch);
    }

    [Fact]
    public void CheckedAtEveryLookTheAlwaysValidTestKeepsItsLevelAndChiSquareDoesNot()
    {
        // 500 healthy canaries (10% share), 50 000 requests, the split checked every 500 requests at
        // p < 0.01 (a looser threshold than the default so that the difference shows in 500 runs).
        // The always-valid test flags at most Binomial(500, 0.01) (mean ≤ 5); allow 12. The chi-square
        // rule, peeked 100 times, flags several times its nominal 1%.
        var random = new Random(52);
        int alwaysValid = 0;
        int chiSquare = 0;
        for (int run = 0; run < 500; run++)
        {
            long candidate = 0;
            bool flaggedValid = false;
            bool flaggedChi = false;
            for (int n = 500; n <= 50000; n += 500)
            {
                candidate += Sampling.Binomial(random, 500, 0.1);
                flaggedValid |= SampleRatioMismatch.Check(n - candidate, candidate, 0.1, 0.01).Mismatch;
                flaggedChi |= SampleRatioMismatch.Check(n - candidate, candidate, 0.1, 0.01, method: SampleRatioMethod.ChiSquare).Mismatch;
            }
            if (flaggedValid) alwaysValid++;
            if (flaggedChi) chiSquare++;
        }
        output.WriteLine($"Healthy splits peeked 100 times at p < 0.01: always-valid flagged {alwaysValid}/500, chi-square {chiSquare}/500");
        Assert.InRange(alwaysValid, 0, 12);
        Assert.True(chiSquare > 2 * alwaysValid + 10, $"chi-square flagged {chiSquare}, always-valid {alwaysValid}");
    }

    [Fact]
    public void FlagsBrokenSplitsAndNotCorrectOnes()
    {
        // One look at 20 000 requests, default threshold 0.001. Correct 10% share: flagged at most
        // once in 1000 by either test (allow 5). Broken 11.5% share: n·KL(0.115‖0.1) ≈ 24 nats of
        // evidence against about 7 needed, so essentially always flagged.
        var random = new Random(51);
        int falseFlags = 0;
        int caught = 0;
        for (int run = 0; run < 1000; run++)
        {
            long correct = Sampling.Binomial(random, 20000, 0.10);
            if (SampleRatioMismatch.Check(20000 - correct, correct, 0.1).Mismatch) falseFlags++;
            long broken = Sampling.Binomial(random, 20000, 0.115);
            if (SampleRatioMismatch.Check(20000 - broken, broken, 0.1).Mismatch) caught++;
        }
        Assert.InRange(falseFlags, 0, 5);
        Assert.InRange(caught, 990, 1000);
    }
}
