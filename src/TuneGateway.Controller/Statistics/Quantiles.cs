namespace TuneGateway.Controller.Statistics;

/// <summary>Sample quantiles.</summary>
public static class Quantiles
{
    /// <summary>
    /// The q-quantile of a sample sorted ascending by linear interpolation between order
    /// statistics, h = (n - 1) q (Hyndman &amp; Fan, "Sample quantiles in statistical packages",
    /// The American Statistician, 1996, definition 7).
    /// </summary>
    public static double Interpolated(ReadOnlySpan<double> sorted, double q)
    {
        if (sorted.IsEmpty) throw new ArgumentException("The sample is empty.", nameof(sorted));
        if (!(q >= 0 && q <= 1)) throw new ArgumentOutOfRangeException(nameof(q), q, "q must lie in [0, 1].");
        double h = (sorted.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>The q-quantile (definition 7) of an unsorted sample; NaN is rejected.</summary>
    public static double Interpolated(IReadOnlyCollection<double> values, double q)
    {
        ArgumentNullException.ThrowIfNull(values);
        double[] sorted = [.. values];
        if (sorted.Any(double.IsNaN)) throw new ArgumentException("Values must not contain NaN.", nameof(values));
        Array.Sort(sorted);
        return Interpolated(sorted, q);
    }
}
