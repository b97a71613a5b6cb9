using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class MaximumMeanDiscrepancyTests
{
    private static readonly float[][] X = [[0, 0], [1, 0], [0, 2], [1.5f, 1]];
    private static readonly float[][] Y = [[3, 1], [2, 2], [4, 0.5f]];

    // Section "MMD on MMD_X / MMD_Y" of tools/stats/reference_values.py (brute-force double sums).
    [Fact]
    public void UnbiasedEstimateAndMedianBandwidthMatchBruteForce()
    {
        double sigma = MaximumMeanDiscrepancy.MedianHeuristicBandwidth(X, Y);
        Approx.Relative(2.23606797749979, sigma, 1e-14);
        Approx.Relative(0.4926715089301903, MaximumMeanDiscrepancy.UnbiasedMmd2(X, Y, sigma), 1e-13);

        var test = MaximumMeanDiscrepancy.PermutationTest(X, Y, permutations: 50, seed: 1);
        Approx.Relative(0.4926715089301903, test.Mmd2, 1e-13);
        Assert.Equal(sigma, test.Bandwidth);
    }

    [Fact]
    public void PermutationPValueIsValidUnderTheNull()
    {
        // 300 tests of two samples from one distribution at α = 0.05: the number of rejections is
        // Binomial(300, ≤ 0.05) (mean ≤ 15, sd ≈ 3.8); allow up to 15 + 3 sd = 26.
        var random = new Random(5);
        int rejections = 0;
        for (int r = 0; r < 300; r++)
        {
            var a = Gaussian(random, 15, 3, 0);
            var b = Gaussian(random, 15, 3, 0);
            if (MaximumMeanDiscrepancy.PermutationTest(a, b, permutations: 99, seed: r).PValue <= 0.05) rejections++;
        }
        Assert.InRange(rejections, 0, 26);
        Assert.InRange(rejections, 3, 300); // and the test is not degenerate (never rejecting)
    }

    [Fact]
    public void DetectsAShiftWithTheSmallestAttainablePValue()
    {
        var random = new Random(9);
        var a = Gaussian(random, 40, 8, 0);
        var b = Gaussian(random, 40, 8, 1.0f);
        var result = MaximumMeanDiscrepancy.PermutationTest(a, b, permutations: 199, seed: 3);
        Assert.Equal(1.0 / 200, result.PValue);
        Assert.True(result.Mmd2 > 0);
    }

    [Fact]
    public void SameSeedGivesTheSamePValue()
    {
        var random = new Random(2);
        var a = Gaussian(random, 20, 4, 0);
        var b = Gaussian(random, 20, 4, 0.2f);
        Assert.Equal(MaximumMeanDiscrepancy.PermutationTest(a, b, 100, seed: 8).PValue, MaximumMeanDiscrepancy.PermutationTest(a, b, 100, seed: 8).PValue);
    }

    [Fact]
    public void DuplicatedPointsFallBackToTheMeanDistance()
    {
        // 5 identical points and one other: 10 of 15 distances are zero, the median is 0, so σ² is
        // the mean of the 5 non-zero squared distances (all 25).
        float[][] a = [[0, 0], [0, 0], [0, 0]];
        float[][] b = [[0, 0], [0, 0], [3, 4]];
        Approx.Relative(5, MaximumMeanDiscrepancy.MedianHeuristicBandwidth(a, b), 1e-15);
    }

    [Fact]
    public void RejectsInconsistentInput()
    {
        Assert.Throws<ArgumentException>(() => MaximumMeanDiscrepancy.PermutationTest([[1f]], [[1f], [2f]]));
        Assert.Throws<ArgumentException>(() => MaximumMeanDiscrepancy.PermutationTest([[1f], [2f]], [[1f, 2f], [2f, 3f]]));
        Assert.Throws<ArgumentException>(() => MaximumMeanDiscrepancy.PermutationTest([[1f], [float.NaN]], [[1f], [2f]]));
    }

    internal static float[][] Gaussian(Random random, int count, int dimension, float shift)
    {
        var points = new float[count][];
        for (int i = 0; i < count; i++)
        {
            points[i] = new float[dimension];
            for (int d = 0; d < dimension; d++) points[i][d] = (float)Sampling.Normal(random) + (d == 0 ? shift : 0);
        }
        return points;
    }
}
