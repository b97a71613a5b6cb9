namespace TuneGateway.Controller.Statistics;

/// <summary>The result of a chi-square goodness-of-fit test.</summary>
/// <param name="Statistic">Pearson's X² = Σ (Oᵢ - Eᵢ)² / Eᵢ.</param>
/// <param name="DegreesOfFreedom">Number of categories minus one.</param>
/// <param name="PValue">P(χ²_df ≥ X²) under the hypothesised proportions.</param>
/// <param name="Expected">The expected counts Eᵢ = N pᵢ.</param>
public sealed record ChiSquareTestResult(double Statistic, int DegreesOfFreedom, double PValue, IReadOnlyList<double> Expected);

/// <summary>The chi-square distribution and Pearson's goodness-of-fit test.</summary>
public static class ChiSquare
{
    /// <summary>P(χ²_df ≤ x) = P(df/2, x/2), the regularized lower incomplete gamma function.</summary>
    public static double Cdf(double x, double degreesOfFreedom)
    {
        CheckDegreesOfFreedom(degreesOfFreedom);
        return x <= 0 ? 0 : SpecialFunctions.RegularizedGammaP(degreesOfFreedom / 2, x / 2);
    }

    /// <summary>P(χ²_df ≥ x) = Q(df/2, x/2), computed directly so that small p-values keep their precision.</summary>
    public static double Survival(double x, double degreesOfFreedom)
    {
        CheckDegreesOfFreedom(degreesOfFreedom);
        return x <= 0 ? 1 : SpecialFunctions.RegularizedGammaQ(degreesOfFreedom / 2, x / 2);
    }

    /// <summary>
    /// Pearson's chi-square goodness-of-fit test of observed counts against hypothesised
    /// proportions (normalised to sum to one). Categories with a hypothesised proportion of zero
    /// must have no observations (otherwise the p-value is 0) and do not count as a degree of freedom.
    /// </summary>
    /// <remarks>
    /// X² is asymptotically χ² with k - 1 degrees of freedom; the usual rule of thumb for the
    /// approximation is every expected count ≥ 5, which callers check through <see cref="ChiSquareTestResult.Expected"/>.
    /// </remarks>
    public static ChiSquareTestResult GoodnessOfFit(ReadOnlySpan<long> observed, ReadOnlySpan<double> proportions)
    {
        if (observed.Length != proportions.Length) throw new ArgumentException("Observed counts and proportions must have the same length.", nameof(proportions));
        if (observed.Length < 2) throw new ArgumentException("A goodness-of-fit test needs at least two categories.", nameof(observed));

        double proportionSum = 0;
        long total = 0;
        for (int i = 0; i < observed.Length; i++)
        {
            if (observed[i] < 0) throw new ArgumentOutOfRangeException(nameof(observed), "Counts must be non-negative.");
            if (!(proportions[i] >= 0) || double.IsInfinity(proportions[i])) throw new ArgumentOutOfRangeException(nameof(proportions), "Proportions must be finite and non-negative.");
            proportionSum += proportions[i];
            total += observed[i];
        }
        if (proportionSum <= 0) throw new ArgumentException("At least one proportion must be positive.", nameof(proportions));

        var expected = new double[observed.Length];
        double statistic = 0;
        int categories = 0;
        bool impossible = false;
        for (int i = 0; i < observed.Length; i++)
        {
            expected[i] = total * proportions[i] / proportionSum;
            if (proportions[i] == 0)
            {
                impossible |= observed[i] > 0;
                continue;
            }
            categories++;
            if (total == 0) continue;
            double diff = observed[i] - expected[i];
            statistic += diff * diff / expected[i];
        }

        int df = Math.Max(categories - 1, 0);
        double p = impossible ? 0 : total == 0 || df == 0 ? 1 : Survival(statistic, df);
        return new ChiSquareTestResult(impossible ? double.PositiveInfinity : statistic, df, p, expected);
    }

    private static void CheckDegreesOfFreedom(double df)
    {
        if (!(df > 0) || double.IsInfinity(df)) throw new ArgumentOutOfRangeException(nameof(df), df, "Degrees of freedom must be positive and finite.");
    }
}
