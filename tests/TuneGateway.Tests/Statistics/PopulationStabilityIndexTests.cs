using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class PopulationStabilityIndexTests
{
    // Section "PSI" of tools/stats/reference_values.py (60-digit decimals).
    [Fact]
    public void FromProportionsMatchesReferenceValues()
    {
        Approx.Relative(0.22821740957339182, PopulationStabilityIndex.FromProportions([0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]), 1e-14);
        // An emptied bin: its proportion is floored at ε = 1e-4.
        Approx.Relative(4.60431846666895, PopulationStabilityIndex.FromProportions([0.5, 0.5], [1, 0]), 1e-14);
        // A bin empty in the reference only.
        Approx.Relative(0.7123991075017365, PopulationStabilityIndex.FromProportions([0.5, 0.3, 0.2, 0], [0.4, 0.3, 0.2, 0.1]), 1e-14);
        Assert.Equal(0, PopulationStabilityIndex.FromProportions([0.5, 0.5, 0], [0.5, 0.5, 0]));
    }

    [Fact]
    public void EdgesAreReferenceDecilesAndTheReferenceAgainstItselfIsStable()
    {
        double[] reference = Enumerable.Range(1, 100).Select(i => (double)i).ToArray();
        var result = PopulationStabilityIndex.Compute(reference, reference);
        Assert.Equal([10.0, 20, 30, 40, 50, 60, 70, 80, 90], result.Edges);
        Assert.All(result.ReferenceProportions, p => Assert.Equal(0.1, p, 15));
        Assert.Equal(0, result.Value);
    }

    [Fact]
    public void TiedReferenceValuesMergeEdges()
    {
        // 50 ones, 30 twos, 20 threes: deciles 1,1,1,1,1,2,2,2,3 collapse to edges {1, 2, 3}.
        double[] reference = [.. Enumerable.Repeat(1.0, 50), .. Enumerable.Repeat(2.0, 30), .. Enumerable.Repeat(3.0, 20)];
        double[] current = [.. Enumerable.Repeat(1.0, 40), .. Enumerable.Repeat(2.0, 30), .. Enumerable.Repeat(3.0, 20), .. Enumerable.Repeat(4.0, 10)];
        var result = PopulationStabilityIndex.Compute(reference, current);
        Assert.Equal([1.0, 2.0, 3.0], result.Edges);
        Assert.Equal([0.5, 0.3, 0.2, 0.0], result.ReferenceProportions);
        Assert.Equal([0.4, 0.3, 0.2, 0.1], result.CurrentProportions);
        Approx.Relative(0.7123991075017365, result.Value, 1e-14);
    }

    [Fact]
    public void NoDriftMeanMatchesTheChiSquareApproximation()
    {
        // PSI ≈ (1/m + 1/n) χ²_(B-1): mean ≈ 9 (1/20000 + 1/1000) = 0.00945 with B = 10. Over 300
        // replicates the sample mean has a standard error of about 0.00945·√(2/9)/√300 ≈ 3%.
        var random = new Random(7);
        double[] reference = Enumerable.Range(0, 20000).Select(_ => Sampling.Normal(random)).ToArray();
        Array.Sort(reference);
        double sum = 0;
        const int replicates = 300;
        for (int r = 0; r < replicates; r++)
        {
            double[] window = Enumerable.Range(0, 1000).Select(_ => Sampling.Normal(random)).ToArray();
            sum += PopulationStabilityIndex.ComputeSorted(reference, window).Value;
        }
        double expected = 9 * (1.0 / 20000 + 1.0 / 1000);
        Approx.Relative(expected, sum / replicates, 0.12);
    }

    [Fact]
    public void MeanShiftGivesThePopulationPsiPlusTheSamplingBias()
    {
        // N(0.5, 1) against N(0, 1) on N(0, 1) deciles has population PSI 0.23775 (section "PSI" of
        // tools/stats/reference_values.py, by statistics.NormalDist); finite samples add about
        // 9 (1/n + 1/m) ≈ 0.0095. A single window's PSI has a standard deviation near 0.03, the mean
        // of 40 windows near 0.005.
        var random = new Random(3);
        double[] reference = Enumerable.Range(0, 20000).Select(_ => Sampling.Normal(random)).ToArray();
        Array.Sort(reference);
        double sum = 0;
        for (int r = 0; r < 40; r++)
        {
            double[] shifted = Enumerable.Range(0, 1000).Select(_ => Sampling.Normal(random) + 0.5).ToArray();
            sum += PopulationStabilityIndex.ComputeSorted(reference, shifted).Value;
        }
        Approx.Absolute(0.2377492046862758 + 9 * (1.0 / 1000 + 1.0 / 20000), sum / 40, 0.02);
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PopulationStabilityIndex.Compute([1.0, 2.0], [1.0], bins: 1));
        Assert.Throws<ArgumentException>(() => PopulationStabilityIndex.Compute([], [1.0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => PopulationStabilityIndex.FromProportions([1.0], [1.0], epsilon: 0));
    }
}
