using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class MetricSummaryTests
{
    [Fact]
    public void WelfordMatchesTheTwoPassFormulas()
    {
        double[] values = [0.2, 0.9, 0.4, 0.4, 1.0, 0.0, 0.65];
        var summary = MetricSummary.FromValues(values);
        double mean = values.Average();
        double m2 = values.Sum(v => (v - mean) * (v - mean));
        Assert.Equal(values.Length, summary.Count);
        Approx.Relative(mean, summary.Mean, 1e-15);
        Approx.Relative(m2, summary.SumSquaredDeviations, 1e-14);
        Approx.Relative(m2 / (values.Length - 1), summary.Variance, 1e-14);
    }

    [Fact]
    public void CombiningShardsEqualsSummarisingEverything()
    {
        var random = new Random(4);
        double[] values = Enumerable.Range(0, 1000).Select(_ => 1e6 + random.NextDouble()).ToArray();
        var whole = MetricSummary.FromValues(values);
        var merged = MetricSummary.FromValues(values.AsSpan(0, 313)).Combine(MetricSummary.FromValues(values.AsSpan(313)));
        Assert.Equal(whole.Count, merged.Count);
        Approx.Relative(whole.Mean, merged.Mean, 1e-15);
        // A large offset (1e6) with unit-scale spread: the naive Σx² - (Σx)²/n would lose ~12 digits here.
        Approx.Relative(whole.SumSquaredDeviations, merged.SumSquaredDeviations, 1e-9);
        Assert.Equal(whole, whole.Combine(MetricSummary.Empty));
        Assert.Equal(0, MetricSummary.Empty.Variance);
    }
}
