namespace TuneGateway.Controller.Statistics;

/// <summary>Which p-value flags a sample ratio mismatch.</summary>
public enum SampleRatioMethod
{
    /// <summary>The always-valid beta-binomial mixture test: safe to check at every look (the default).</summary>
    AlwaysValid,
    /// <summary>Pearson's chi-square test: exact level only if checked once, at a fixed sample size.</summary>
    ChiSquare,
}

/// <summary>The sample-ratio check of a two-arm split.</summary>
/// <param name="ControlCount">Requests routed to control.</param>
/// <param name="CandidateCount">Requests routed to the candidate.</param>
/// <param name="ExpectedCandidateShare">The configured candidate share f.</param>
/// <param name="ObservedCandidateShare">Candidate / (control + candidate), 0 without traffic.</param>
/// <param name="ChiSquare">Pearson's X² against (1 - f, f).</param>
/// <param name="ChiSquarePValue">P(χ²₁ ≥ X²), valid for a single look.</param>
/// <param name="SequentialPValue">min(1, 1/M) of the beta-binomial mixture, valid at every look.</param>
/// <param name="Method">The p-value the flag is based on.</param>
/// <param name="Mismatch">That p-value is below the threshold, with enough traffic to judge.</param>
public sealed record SampleRatioResult(long ControlCount, long CandidateCount, double ExpectedCandidateShare, double ObservedCandidateShare,
    double ChiSquare, double ChiSquarePValue, double SequentialPValue, SampleRatioMethod Method, bool Mismatch)
{
    /// <summary>The p-value the mismatch flag is based on.</summary>
    public double PValue => Method == SampleRatioMethod.ChiSquare ? ChiSquarePValue : SequentialPValue;
}

/// <summary>
/// Sample ratio mismatch (SRM): whether the observed split of traffic between the arms is
/// compatible with the configured split. A mismatch means the assignment or the logging is broken
/// (requests lost, retried or routed by something correlated with the outcome) and the comparison
/// of the arms cannot be trusted, whatever its p-values say. Fabijan, Gupchup, Gupta, Omhover, Qin,
/// Vermeer &amp; Dmitriev, "Diagnosing sample ratio mismatch in online controlled experiments" (KDD 2019).
/// </summary>
/// <remarks>
/// <para><b>Chi-square.</b> Pearson's goodness-of-fit test of the counts against (1 - f, f), one
/// degree of freedom, p = Q(½, X²/2). Always reported. Its level holds for one look only: the
/// controller checks the split at every look, and over a canary's many looks a p &lt; 0.001 rule
/// flags healthy splits several times more often than 0.1% (measured in the tests).</para>
/// <para><b>Always valid.</b> With each request routed to the candidate independently with
/// probability f, the counts (S candidate, F control) have likelihood f^S (1-f)^F. Mixing the
/// alternative share θ over Beta(k f, k (1-f)) (centred on f, concentration k) gives the
/// likelihood ratio M = B(S + k f, F + k (1-f)) / B(k f, k (1-f)) / (f^S (1-f)^F), a non-negative
/// martingale under H₀; Ville's inequality bounds the chance that it ever reaches 1/α by α, so
/// flagging when M ≥ 1/α is valid however often it is checked. This is the two-arm case of the
/// Dirichlet–multinomial test of Lindon &amp; Malek, "Anytime-valid inference for multinomial count
/// data" (NeurIPS 2022). k = 1000 (prior standard deviation of the share √(f(1-f)/1001), 0.0095 at
/// f = 0.1) favours the small relative deviations typical of SRM bugs; a 9% instead of 10% share is
/// flagged at p &lt; 0.001 by 20 000 requests.</para>
/// </remarks>
public static class SampleRatioMismatch
{
    public const double DefaultPValueThreshold = 0.001;
    public const double DefaultConcentration = 1000;

    /// <summary>
    /// Checks the split. With fewer than <paramref name="minimumTotal"/> requests, or fewer than
    /// 5 expected in an arm, the p-values are reported but no mismatch is flagged.
    /// </summary>
    public static SampleRatioResult Check(long controlCount, long candidateCount, double expectedCandidateShare,
        double pValueThreshold = DefaultPValueThreshold, long minimumTotal = 100, SampleRatioMethod method = SampleRatioMethod.AlwaysValid,
        double concentration = DefaultConcentration)
    {
        if (controlCount < 0 || candidateCount < 0) throw new ArgumentOutOfRangeException(nameof(controlCount), "Counts must be non-negative.");
        if (!(expectedCandidateShare > 0 && expectedCandidateShare < 1))
            throw new ArgumentOutOfRangeException(nameof(expectedCandidateShare), expectedCandidateShare, "The candidate share must lie in (0, 1).");
        if (!(pValueThreshold > 0 && pValueThreshold < 1)) throw new ArgumentOutOfRangeException(nameof(pValueThreshold), pValueThreshold, "Must lie in (0, 1).");

        long total = controlCount + candidateCount;
        var test = ChiSquare.GoodnessOfFit([controlCount, candidateCount], [1 - expectedCandidateShare, expectedCandidateShare]);
        double logM = LogLikelihoodRatio(controlCount, candidateCount, expectedCandidateShare, concentration);
        double sequentialP = logM <= 0 ? 1 : Math.Exp(-logM);
        double p = method == SampleRatioMethod.ChiSquare ? test.PValue : sequentialP;
        bool enough = total >= minimumTotal && test.Expected.Min() >= 5;
        double observedShare = total == 0 ? 0 : candidateCount / (double)total;
        return new SampleRatioResult(controlCount, candidateCount, expectedCandidateShare, observedShare, test.Statistic, test.PValue, sequentialP,
            method, enough && p < pValueThreshold);
    }

    /// <summary>ln M = ln B(S + k f, F + k (1-f)) - ln B(k f, k (1-f)) - S ln f - F ln(1 - f).</summary>
    public static double LogLikelihoodRatio(long controlCount, long candidateCount, double expectedCandidateShare, double concentration = DefaultConcentration)
    {
        if (controlCount < 0 || candidateCount < 0) throw new ArgumentOutOfRangeException(nameof(controlCount), "Counts must be non-negative.");
        if (!(concentration > 0) || double.IsInfinity(concentration)) throw new ArgumentOutOfRangeException(nameof(concentration), concentration, "Must be positive and finite.");
        double f = expectedCandidateShare;
        double a = concentration * f;
        double b = concentration * (1 - f);
        return SpecialFunctions.LogBeta(candidateCount + a, controlCount + b) - SpecialFunctions.LogBeta(a, b)
            - candidateCount * Math.Log(f) - controlCount * SpecialFunctions.Log1P(-f);
    }
}
