namespace TuneGateway.Controller.Statistics;

/// <summary>A population stability index with the binning it was computed on.</summary>
/// <param name="Value">PSI = Σᵢ (aᵢ - eᵢ) ln(aᵢ / eᵢ) over bins, proportions floored at ε.</param>
/// <param name="Edges">Interior bin edges (ascending, distinct); bin i is (edgeᵢ₋₁, edgeᵢ].</param>
/// <param name="ReferenceProportions">eᵢ, the reference proportions before flooring.</param>
/// <param name="CurrentProportions">aᵢ, the current proportions before flooring.</param>
public sealed record PsiResult(double Value, IReadOnlyList<double> Edges, IReadOnlyList<double> ReferenceProportions, IReadOnlyList<double> CurrentProportions);

/// <summary>
/// The population stability index between a reference sample and a current sample of one
/// numeric feature, on bins cut at the reference quantiles.
/// </summary>
/// <remarks>
/// <para>PSI = Σᵢ (aᵢ - eᵢ) ln(aᵢ / eᵢ) is the symmetrised Kullback–Leibler divergence
/// KL(a‖e) + KL(e‖a) of the binned distributions (Jeffreys' J-divergence; see Yurdakul &amp;
/// Naranjo, "Statistical properties of the population stability index", J. Risk Model
/// Validation, 2020). Conventional reading: &lt; 0.1 stable, 0.1–0.2 moderate shift, &gt; 0.2 large shift.</para>
/// <para><b>Bins.</b> Interior edges are the reference quantiles at k/B, k = 1..B-1, by the
/// inverse empirical distribution function (the smallest reference value x with F(x) ≥ k/B),
/// so every edge is an observed value; bins are right-closed, (edgeₖ₋₁, edgeₖ]. With continuous
/// data each bin then holds 1/B of the reference. Repeated edges (tied data, e.g. integer lengths)
/// are merged, so a heavily tied feature gets fewer, unequal bins rather than empty duplicates.</para>
/// <para><b>Empty bins.</b> A bin with no observations on one side would make ln(a/e) infinite;
/// proportions below ε are raised to ε (default 1e-4, i.e. "one in ten thousand") before the sum,
/// without renormalising. A bin empty on both sides contributes 0; a bin of reference mass e that
/// empties completely contributes (e - ε) ln(e/ε), e.g. 0.69 for e = 0.1.</para>
/// <para><b>Sampling noise.</b> For two samples of sizes m and n from one distribution,
/// PSI ≈ Σ (aᵢ - eᵢ)²/πᵢ ≈ (1/m + 1/n)·χ²_(B-1) (second-order expansion of the log), so its
/// no-drift mean is about (B - 1)(1/m + 1/n). With B = 10 and a large reference, PSI &gt; 0.2 by
/// chance needs χ²₉ &gt; 0.2·n: probability about 2% at n = 100 but 8e-6 at n = 200, which is why
/// drift alarms on PSI need a minimum window size.</para>
/// </remarks>
public static class PopulationStabilityIndex
{
    public const int DefaultBins = 10;
    public const double DefaultEpsilon = 1e-4;

    /// <summary>PSI of <paramref name="current"/> against <paramref name="reference"/> (neither needs to be sorted).</summary>
    public static PsiResult Compute(ReadOnlySpan<double> reference, ReadOnlySpan<double> current, int bins = DefaultBins, double epsilon = DefaultEpsilon)
    {
        double[] sorted = reference.ToArray();
        Array.Sort(sorted);
        return ComputeSorted(sorted, current, bins, epsilon);
    }

    /// <summary>PSI of <paramref name="current"/> against a reference sample sorted ascending.</summary>
    public static PsiResult ComputeSorted(ReadOnlySpan<double> sortedReference, ReadOnlySpan<double> current, int bins = DefaultBins, double epsilon = DefaultEpsilon)
    {
        if (sortedReference.IsEmpty || current.IsEmpty) throw new ArgumentException("Both samples must be non-empty.");
        double[] edges = QuantileEdges(sortedReference, bins);
        double[] expected = BinProportions(sortedReference, edges);
        double[] actual = BinProportions(current, edges);
        return new PsiResult(FromProportions(expected, actual, epsilon), edges, expected, actual);
    }

    /// <summary>
    /// Interior edges at the reference quantiles k/B (inverse ECDF: the ⌈k·n/B⌉-th smallest value),
    /// k = 1..B-1, with repeats removed.
    /// </summary>
    public static double[] QuantileEdges(ReadOnlySpan<double> sortedReference, int bins)
    {
        if (bins < 2) throw new ArgumentOutOfRangeException(nameof(bins), bins, "PSI needs at least two bins.");
        if (sortedReference.IsEmpty) throw new ArgumentException("The reference sample is empty.", nameof(sortedReference));
        int n = sortedReference.Length;
        var edges = new List<double>(bins - 1);
        for (int k = 1; k < bins; k++)
        {
            long rank = ((long)k * n + bins - 1) / bins; // ⌈k·n/B⌉, 1-based
            double edge = sortedReference[(int)Math.Max(rank - 1, 0)];
            if (double.IsNaN(edge)) throw new ArgumentException("The reference sample contains NaN.", nameof(sortedReference));
            if (edges.Count == 0 || edge > edges[^1]) edges.Add(edge);
        }
        return [.. edges];
    }

    /// <summary>Proportions of <paramref name="values"/> in the right-closed bins defined by <paramref name="edges"/> (B = edges + 1 bins).</summary>
    public static double[] BinProportions(ReadOnlySpan<double> values, ReadOnlySpan<double> edges)
    {
        if (values.IsEmpty) throw new ArgumentException("No values to bin.", nameof(values));
        var counts = new long[edges.Length + 1];
        foreach (double v in values)
        {
            if (double.IsNaN(v)) throw new ArgumentException("Values must not contain NaN.", nameof(values));
            counts[BinIndex(edges, v)]++;
        }
        var proportions = new double[counts.Length];
        for (int i = 0; i < counts.Length; i++) proportions[i] = counts[i] / (double)values.Length;
        return proportions;
    }

    /// <summary>Σᵢ (aᵢ - eᵢ) ln(aᵢ / eᵢ) with both proportions floored at <paramref name="epsilon"/>.</summary>
    public static double FromProportions(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double epsilon = DefaultEpsilon)
    {
        if (expected.Length != actual.Length) throw new ArgumentException("Both proportion vectors need the same bins.");
        if (!(epsilon > 0 && epsilon < 1)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "Epsilon must lie in (0, 1).");
        double psi = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = Math.Max(expected[i], epsilon);
            double a = Math.Max(actual[i], epsilon);
            psi += (a - e) * Math.Log(a / e);
        }
        return psi;
    }

    /// <summary>The bin of v: the number of edges strictly below v (bins are right-closed).</summary>
    private static int BinIndex(ReadOnlySpan<double> edges, double v)
    {
        int lo = 0;
        int hi = edges.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (edges[mid] < v) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }
}
