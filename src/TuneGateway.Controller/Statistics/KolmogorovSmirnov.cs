namespace TuneGateway.Controller.Statistics;

/// <summary>How the p-value of a two-sample Kolmogorov–Smirnov test was (or is to be) computed.</summary>
public enum KsPValueMethod
{
    /// <summary>Exact when m·n is at most <see cref="KolmogorovSmirnov.DefaultExactLimit"/>, asymptotic otherwise.</summary>
    Auto,
    /// <summary>Exact null distribution by counting lattice paths, O(m·n) time.</summary>
    Exact,
    /// <summary>Kolmogorov's limiting distribution with Stephens' effective-n correction.</summary>
    Asymptotic,
}

/// <summary>The result of a two-sample Kolmogorov–Smirnov test.</summary>
/// <param name="Statistic">D = sup |F₁(x) - F₂(x)| over the two empirical distribution functions.</param>
/// <param name="PValue">P(D' ≥ D) under H₀ (both samples from one continuous distribution).</param>
/// <param name="Size1">m, the size of the first sample.</param>
/// <param name="Size2">n, the size of the second sample.</param>
/// <param name="Method">The method actually used for the p-value.</param>
public readonly record struct KsResult(double Statistic, double PValue, int Size1, int Size2, KsPValueMethod Method);

/// <summary>
/// The two-sample Kolmogorov–Smirnov test: D = sup_x |F₁(x) - F₂(x)|, with an exact or an
/// asymptotic p-value.
/// </summary>
/// <remarks>
/// <para><b>Statistic and ties.</b> Both samples are sorted and the ECDFs are compared only after
/// all observations equal to a value have been counted on both sides, so D is the supremum of
/// the true ECDF difference also with tied values (integer-valued features such as token counts).
/// D is kept as the integer m·n·D = max |i·n - j·m| so the exact test compares it without rounding.</para>
/// <para><b>Exact p-value.</b> Under H₀ with continuous data every interleaving of the two sorted
/// samples is equally likely: a uniformly random monotone lattice path from (0, 0) to (m, n).
/// D ≥ d exactly when the path touches a point with |i·n - j·m| ≥ m·n·d. Writing c(i, j) for the
/// fraction of paths to (i, j) that have touched the boundary, c = 1 on the boundary and otherwise
/// c(i, j) = (i·c(i-1, j) + j·c(i, j-1)) / (i + j) (the weights are the fractions of paths to
/// (i, j) arriving from the left and from below), and p = c(m, n). Computing the crossing
/// probability directly (rather than 1 - non-crossing) keeps small p-values accurate.
/// See Hodges, "The significance probability of the Smirnov two-sample test" (Arkiv för Matematik, 1958).</para>
/// <para><b>Asymptotic p-value.</b> p ≈ Q_KS(λ) with λ = (√nₑ + 0.12 + 0.11/√nₑ)·D and
/// nₑ = m·n/(m + n), Stephens' correction ("Use of the Kolmogorov–Smirnov, Cramér–von Mises and
/// related statistics without extensive tables", JRSS B, 1970), Q_KS the Kolmogorov survival function.
/// Against the exact values it is within about 1% for unequal sizes in the hundreds and thousands
/// (e.g. m = 2000, n = 300); for equal sizes D lives on the lattice k/n and the exact tail includes
/// the atom at D, which the limit misses (about 6% low at m = n = 300). <see cref="KsPValueMethod.Auto"/>
/// therefore computes the exact value whenever m·n ≤ <see cref="DefaultExactLimit"/>.</para>
/// <para><b>Ties and the p-value.</b> Both p-values assume continuous data. With ties the attainable
/// values of D shrink (fewer interleavings are distinguishable), D is stochastically smaller under
/// H₀, and the continuous-null p-value is conservative: the test rejects no more often than its
/// nominal level.</para>
/// </remarks>
public static class KolmogorovSmirnov
{
    /// <summary>Largest m·n for which <see cref="KsPValueMethod.Auto"/> uses the exact O(m·n) computation.</summary>
    public const long DefaultExactLimit = 100_000;

    /// <summary>Two-sample test on unsorted samples (copied and sorted here; NaN is rejected).</summary>
    public static KsResult TwoSample(ReadOnlySpan<double> sample1, ReadOnlySpan<double> sample2, KsPValueMethod method = KsPValueMethod.Auto)
    {
        double[] a = sample1.ToArray();
        double[] b = sample2.ToArray();
        Array.Sort(a);
        Array.Sort(b);
        return TwoSampleSorted(a, b, method);
    }

    /// <summary>Two-sample test on samples already sorted ascending.</summary>
    public static KsResult TwoSampleSorted(ReadOnlySpan<double> sorted1, ReadOnlySpan<double> sorted2, KsPValueMethod method = KsPValueMethod.Auto)
    {
        int m = sorted1.Length;
        int n = sorted2.Length;
        if (m == 0 || n == 0) throw new ArgumentException("Both samples must be non-empty.");
        CheckSorted(sorted1, nameof(sorted1));
        CheckSorted(sorted2, nameof(sorted2));

        long scaled = ScaledStatistic(sorted1, sorted2);
        double d = scaled / ((double)m * n);
        if (method == KsPValueMethod.Auto)
            method = (long)m * n <= DefaultExactLimit ? KsPValueMethod.Exact : KsPValueMethod.Asymptotic;
        double p = method == KsPValueMethod.Exact ? ExactPValue(m, n, scaled) : AsymptoticPValue(m, n, d);
        return new KsResult(d, p, m, n, method);
    }

    /// <summary>m·n·D = max over the merged order of |i·n - j·m|, evaluated after each block of ties.</summary>
    public static long ScaledStatistic(ReadOnlySpan<double> sorted1, ReadOnlySpan<double> sorted2)
    {
        long m = sorted1.Length;
        long n = sorted2.Length;
        int i = 0;
        int j = 0;
        long max = 0;
        while (i < m && j < n)
        {
            double v = Math.Min(sorted1[i], sorted2[j]);
            while (i < m && sorted1[i] == v) i++;
            while (j < n && sorted2[j] == v) j++;
            max = Math.Max(max, Math.Abs(i * n - j * m));
        }
        // Once one sample is exhausted its ECDF is 1 and the difference only shrinks towards 0.
        return max;
    }

    /// <summary>
    /// Exact P(m·n·D ≥ <paramref name="scaledStatistic"/>) for samples of sizes m and n from one
    /// continuous distribution, by the lattice-path recursion described on the class.
    /// </summary>
    public static double ExactPValue(int m, int n, long scaledStatistic)
    {
        if (m <= 0 || n <= 0) throw new ArgumentOutOfRangeException(nameof(m), "Sample sizes must be positive.");
        if (scaledStatistic <= 0) return 1;

        long mm = m;
        long nn = n;
        var c = new double[n + 1];
        c[0] = 0;
        for (int j = 1; j <= n; j++)
            c[j] = j * mm >= scaledStatistic ? 1 : c[j - 1];
        for (int i = 1; i <= m; i++)
        {
            long iN = i * nn;
            if (iN >= scaledStatistic) c[0] = 1;
            for (int j = 1; j <= n; j++)
            {
                if (Math.Abs(iN - j * mm) >= scaledStatistic) c[j] = 1;
                else c[j] = (i * c[j] + j * c[j - 1]) / (i + j);
            }
        }
        return Math.Clamp(c[n], 0, 1);
    }

    /// <summary>Q_KS((√nₑ + 0.12 + 0.11/√nₑ)·D) with nₑ = m·n/(m + n).</summary>
    public static double AsymptoticPValue(int m, int n, double statistic)
    {
        if (m <= 0 || n <= 0) throw new ArgumentOutOfRangeException(nameof(m), "Sample sizes must be positive.");
        double ne = (double)m * n / ((double)m + n);
        double root = Math.Sqrt(ne);
        return SpecialFunctions.KolmogorovSurvival((root + 0.12 + 0.11 / root) * statistic);
    }

    private static void CheckSorted(ReadOnlySpan<double> values, string name)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (double.IsNaN(values[i])) throw new ArgumentException("Samples must not contain NaN.", name);
            if (i > 0 && values[i] < values[i - 1]) throw new ArgumentException("The sample must be sorted ascending.", name);
        }
    }
}
