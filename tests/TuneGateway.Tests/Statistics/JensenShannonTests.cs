using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class JensenShannonTests
{
    // Section "Jensen-Shannon divergence" of tools/stats/reference_values.py: the entropy form
    // H(M) - (H(P) + H(Q))/2 in 60-digit decimals.
    [Theory]
    [InlineData(new double[] { 1, 2, 3, 4 }, new double[] { 4, 3, 2, 1 }, 0.1535606553289845)]
    [InlineData(new double[] { 10, 0, 5 }, new double[] { 0, 7, 5 }, 0.6283464775606666)]
    [InlineData(new double[] { 1, 1 }, new double[] { 1, 3 }, 0.04879494069539853)]
    [InlineData(new double[] { 500, 300, 200 }, new double[] { 490, 310, 200 }, 9.556180706354756e-05)]
    [InlineData(new double[] { 1000000, 1, 0 }, new double[] { 999999, 2, 0 }, 1.2255630669892932e-07)]
    public void DivergenceMatchesTheEntropyForm(double[] p, double[] q, double expected)
    {
        Approx.Relative(expected, JensenShannon.Divergence(p, q), 1e-13);
        Approx.Relative(expected, JensenShannon.Divergence(q, p), 1e-13);
        Approx.Relative(Math.Sqrt(expected), JensenShannon.Distance(p, q), 1e-13);
    }

    [Fact]
    public void SparseHistogramsTreatMissingKeysAsZero()
    {
        var p = new Dictionary<int, long> { [7] = 10, [42] = 5 };
        var q = new Dictionary<int, long> { [99] = 7, [42] = 5 };
        // Same as the dense case [10, 0, 5] vs [0, 7, 5].
        Approx.Relative(0.6283464775606666, JensenShannon.Divergence(p, q), 1e-13);
        Assert.Equal(0, JensenShannon.Distance(p, new Dictionary<int, long> { [42] = 50, [7] = 100 }));
        Assert.Equal(1, JensenShannon.Distance(new Dictionary<int, long> { [1] = 3 }, new Dictionary<int, long> { [2] = 4 }));
    }

    [Fact]
    public void NoDriftDistanceMatchesSimulation()
    {
        // Multinomial draws from one distribution over 32 categories: the mean plug-in distance is
        // close to √(31 (1/N + 1/M) / (8 ln 2)); the approximation is second order, so allow 10%.
        var random = new Random(11);
        double[] weights = Enumerable.Range(1, 32).Select(k => 1.0 / k).ToArray();
        double[] cumulative = new double[weights.Length];
        double total = weights.Sum();
        double running = 0;
        for (int i = 0; i < weights.Length; i++) cumulative[i] = running += weights[i] / total;

        const int n = 5000;
        const int m = 20000;
        double sum = 0;
        const int replicates = 50;
        for (int r = 0; r < replicates; r++)
            sum += JensenShannon.Distance(Draw(random, cumulative, m), Draw(random, cumulative, n));
        Approx.Relative(JensenShannon.NoDriftDistance(32, m, n), sum / replicates, 0.1);
    }

    [Fact]
    public void RejectsEmptyOrNegativeHistograms()
    {
        Assert.Throws<ArgumentException>(() => JensenShannon.Distance(new Dictionary<int, long>(), new Dictionary<int, long> { [1] = 1 }));
        Assert.Throws<ArgumentException>(() => JensenShannon.Distance(new Dictionary<int, long> { [1] = -1 }, new Dictionary<int, long> { [1] = 1 }));
        Assert.Throws<ArgumentException>(() => JensenShannon.Distance([1.0, 2.0], [1.0]));
    }

    private static double[] Draw(Random random, double[] cumulative, int count)
    {
        var counts = new double[cumulative.Length];
        for (int i = 0; i < count; i++)
        {
            int k = Array.BinarySearch(cumulative, random.NextDouble());
            if (k < 0) k = ~k;
            counts[Math.Min(k, counts.Length - 1)]++;
        }
        return counts;
    }
}
