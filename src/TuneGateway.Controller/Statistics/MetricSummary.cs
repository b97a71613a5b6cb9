namespace TuneGateway.Controller.Statistics;

/// <summary>
/// Count, mean and sum of squared deviations of a numeric metric, updated one value at a time
/// (Welford) or merged across shards (Chan, Golub &amp; LeVeque), without the cancellation of the
/// naive Σx² - (Σx)²/n.
/// </summary>
/// <remarks>
/// Welford, "Note on a method for calculating corrected sums of squares and products"
/// (Technometrics, 1962); Chan, Golub &amp; LeVeque, "Algorithms for computing the sample variance:
/// analysis and recommendations" (The American Statistician, 1983): merging (n₁, x̄₁, M₁) and
/// (n₂, x̄₂, M₂) gives n = n₁ + n₂, x̄ = x̄₁ + δ n₂/n, M = M₁ + M₂ + δ² n₁ n₂ / n with δ = x̄₂ - x̄₁.
/// </remarks>
/// <param name="Count">Number of values.</param>
/// <param name="Mean">Their mean (0 when empty).</param>
/// <param name="SumSquaredDeviations">M = Σ (xᵢ - x̄)².</param>
public readonly record struct MetricSummary(long Count, double Mean, double SumSquaredDeviations)
{
    public static MetricSummary Empty => default;

    /// <summary>The sample variance M / (n - 1) (0 for fewer than two values).</summary>
    public double Variance => Count > 1 ? SumSquaredDeviations / (Count - 1) : 0;

    /// <summary>This summary with one more value.</summary>
    public MetricSummary Add(double value)
    {
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, "Metric values must be finite.");
        long n = Count + 1;
        double delta = value - Mean;
        double mean = Mean + delta / n;
        return new MetricSummary(n, mean, SumSquaredDeviations + delta * (value - mean));
    }

    /// <summary>The summary of the union of both sets of values.</summary>
    public MetricSummary Combine(MetricSummary other)
    {
        if (other.Count == 0) return this;
        if (Count == 0) return other;
        long n = Count + other.Count;
        double delta = other.Mean - Mean;
        double mean = Mean + delta * other.Count / n;
        double m2 = SumSquaredDeviations + other.SumSquaredDeviations + delta * delta * ((double)Count * other.Count / n);
        return new MetricSummary(n, mean, m2);
    }

    /// <summary>The summary of <paramref name="values"/>.</summary>
    public static MetricSummary FromValues(ReadOnlySpan<double> values)
    {
        var summary = Empty;
        foreach (double v in values) summary = summary.Add(v);
        return summary;
    }
}
