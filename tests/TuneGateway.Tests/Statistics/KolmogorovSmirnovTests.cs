using System.Numerics;
using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class KolmogorovSmirnovTests
{
    // Section "KS exact p-values (path counting)" of tools/stats/reference_values.py: Python
    // integers count the lattice paths that stay inside the band, p = 1 - inside / C(m+n, n).
    [Theory]
    [InlineData(5, 7, 35, 0.0025252525252525255)]
    [InlineData(5, 7, 20, 0.23737373737373738)]
    [InlineData(10, 10, 50, 0.16782134274394336)]
    [InlineData(10, 10, 70, 0.012340600575894693)]
    [InlineData(8, 12, 48, 0.1495594189092641)]
    [InlineData(40, 60, 1200, 6.2660190148725815e-06)]
    [InlineData(50, 50, 1000, 0.0005822568814776495)]
    [InlineData(100, 80, 3000, 4.5641373279397556e-06)]
    [InlineData(300, 300, 9000, 0.09956251966128948)]
    [InlineData(300, 300, 24000, 8.690124079460016e-10)]
    [InlineData(2000, 300, 60000, 0.01009100707402342)]
    public void ExactPValueMatchesPathCounting(int m, int n, long scaled, double expected)
        => Approx.Relative(expected, KolmogorovSmirnov.ExactPValue(m, n, scaled), 1e-11);

    [Theory]
    [InlineData(20, 5)]
    [InlineData(60, 12)]
    [InlineData(200, 23)]
    public void ExactPValueMatchesGnedenkoKorolyukForEqualSizes(int n, int k)
    {
        // For m = n: P(D ≥ k/n) = 2 Σ_{j≥1} (-1)^(j+1) C(2n, n - jk) / C(2n, n), evaluated in big integers.
        BigInteger sum = 0;
        for (int j = 1; n - j * k >= 0; j++)
        {
            BigInteger term = Binomial(2 * n, n - j * k);
            sum += j % 2 == 1 ? term : -term;
        }
        double expected = Math.Exp(BigInteger.Log(2 * sum) - BigInteger.Log(Binomial(2 * n, n)));
        Approx.Relative(expected, KolmogorovSmirnov.ExactPValue(n, n, (long)k * n), 1e-11);
    }

    [Fact]
    public void StatisticIsEvaluatedAfterWholeBlocksOfTies()
    {
        // ECDFs: at 1: ¼ vs 0; at 2: ¾ vs ¾; at 3: 1 vs ¾; at 4: 1 vs 1. D = ¼. Stepping through the
        // tied 2s one sample at a time would wrongly see ¾ vs 0.
        var result = KolmogorovSmirnov.TwoSample([1, 2, 2, 3], [2, 2, 2, 4]);
        Assert.Equal(0.25, result.Statistic);
        Assert.Equal(KsPValueMethod.Exact, result.Method);
        Assert.Equal(1.0, KolmogorovSmirnov.TwoSample([3, 1, 2], [2, 3, 1]).PValue);
    }

    [Fact]
    public void SeparatedSamplesGiveTheSmallestExactPValue()
    {
        // Only the two extreme interleavings reach D = 1: p = 2 / C(12, 5).
        var result = KolmogorovSmirnov.TwoSample([1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 12]);
        Assert.Equal(1.0, result.Statistic);
        Approx.Relative(2.0 / 792, result.PValue, 1e-14);
    }

    [Theory]
    [InlineData(2000, 300, 60000, 0.01009100707402342, 0.02)]
    [InlineData(2000, 300, 33000, 0.39499806218807065, 0.02)]
    // Equal sizes: D lives on the lattice k/n and the exact tail includes the atom at D, which the
    // continuous limit misses (about 6% here); Auto uses the exact computation at this size anyway.
    [InlineData(300, 300, 9000, 0.09956251966128948, 0.08)]
    public void AsymptoticPValueWithStephensCorrectionIsCloseToExact(int m, int n, long scaled, double exact, double tolerance)
    {
        double d = scaled / ((double)m * n);
        Approx.Relative(exact, KolmogorovSmirnov.AsymptoticPValue(m, n, d), tolerance);
    }

    [Fact]
    public void AutoSwitchesToAsymptoticForLargeSamples()
    {
        var random = new Random(1);
        double[] a = Enumerable.Range(0, 1000).Select(_ => random.NextDouble()).ToArray();
        double[] b = Enumerable.Range(0, 500).Select(_ => random.NextDouble()).ToArray();
        var result = KolmogorovSmirnov.TwoSample(a, b);
        Assert.Equal(KsPValueMethod.Asymptotic, result.Method);
        Assert.Equal(KsPValueMethod.Exact, KolmogorovSmirnov.TwoSample(a.AsSpan(0, 200), b.AsSpan(0, 200)).Method);
    }

    [Fact]
    public void RejectsEmptyUnsortedOrNaNInput()
    {
        Assert.Throws<ArgumentException>(() => KolmogorovSmirnov.TwoSample([], [1.0]));
        Assert.Throws<ArgumentException>(() => KolmogorovSmirnov.TwoSampleSorted([2.0, 1.0], [1.0]));
        Assert.Throws<ArgumentException>(() => KolmogorovSmirnov.TwoSample([double.NaN], [1.0]));
    }

    private static BigInteger Binomial(int n, int k)
    {
        BigInteger result = 1;
        for (int i = 1; i <= k; i++) result = result * (n - k + i) / i;
        return result;
    }
}
