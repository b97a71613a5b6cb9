namespace TuneGateway.Controller.Statistics;

/// <summary>
/// What a sequential test carries from one look to the next: the running minimum of the
/// always-valid p-value, the running intersection of the confidence sequence (null: unbounded) and
/// the direction fixed at the first rejection. Plain data, serializable with System.Text.Json.
/// </summary>
/// <param name="PValue">min over looks of 1/Λ, capped at 1.</param>
/// <param name="Lower">Largest lower confidence bound seen, or null before the first look.</param>
/// <param name="Upper">Smallest upper confidence bound seen, or null before the first look.</param>
/// <param name="Direction">+1 if H₀ was rejected with the candidate above control, -1 below, 0 not rejected.</param>
/// <param name="Looks">Number of looks so far.</param>
public sealed record SequentialTestState(double PValue, double? Lower, double? Upper, int Direction, long Looks)
{
    public static SequentialTestState Initial { get; } = new(1, null, null, 0, 0);
}

/// <summary>One look of a mixture sequential test of H₀: θ = 0 for a difference θ = candidate - control.</summary>
/// <param name="Estimate">θ̂, the observed difference.</param>
/// <param name="StandardError">√V, V the estimated variance of θ̂.</param>
/// <param name="LogLikelihoodRatio">ln Λ at this look.</param>
/// <param name="PValue">The always-valid p-value: running minimum of min(1, 1/Λ), non-increasing over looks.</param>
/// <param name="Lower">Lower end of the running intersection of the confidence sequence.</param>
/// <param name="Upper">Upper end of the running intersection of the confidence sequence.</param>
/// <param name="CurrentLower">Lower end of this look's confidence interval.</param>
/// <param name="CurrentUpper">Upper end of this look's confidence interval.</param>
/// <param name="Alpha">Level of the test and of the (1 - α) confidence sequence.</param>
/// <param name="Tau">Standard deviation τ of the normal mixing distribution.</param>
/// <param name="State">State to pass to the next look.</param>
public sealed record SequentialComparison(
    double Estimate,
    double StandardError,
    double LogLikelihoodRatio,
    double PValue,
    double Lower,
    double Upper,
    double CurrentLower,
    double CurrentUpper,
    double Alpha,
    double Tau,
    SequentialTestState State)
{
    /// <summary>+1: the candidate is significantly above control; -1: below; 0: no decision yet.</summary>
    public int Direction => State.Direction;

    /// <summary>Whether H₀: θ = 0 has been rejected at some look.</summary>
    public bool Rejected => State.Direction != 0;
}

/// <summary>
/// The mixture sequential probability ratio test (mSPRT) with a normal mixing distribution, and
/// its dual always-valid confidence sequence, for the difference between a candidate's and a
/// control's rate or mean.
/// </summary>
/// <remarks>
/// <para><b>Test.</b> Johari, Koomen, Pekelis &amp; Walsh, "Peeking at A/B tests: why it matters, and
/// what to do about it" (KDD 2017) and "Always valid inference: continuous monitoring of A/B tests"
/// (Operations Research, 2022). Let θ̂ be the difference of the arms' sample means and V its
/// variance σ_A²/n_A + σ_B²/n_B. Treating θ̂ as N(θ, V) and mixing the alternative over
/// θ ~ N(θ₀, τ²), the likelihood ratio against θ = θ₀ is
/// Λ = √(V / (V + τ²)) · exp(τ² (θ̂ - θ₀)² / (2 V (V + τ²))).
/// With the traffic split fixed, 1/V grows linearly in the number of requests and θ̂/V is a random
/// walk in this "information time", so Λ is a martingale under H₀ (exactly for Gaussian data with
/// known variance, asymptotically otherwise) and Ville's inequality gives P(∃n: Λₙ ≥ 1/α) ≤ α.
/// The always-valid p-value pₙ = min(pₙ₋₁, 1/Λₙ) is therefore valid however often it is checked,
/// and non-increasing by construction.</para>
/// <para><b>Confidence sequence.</b> Solving Λ(θ₀) &lt; 1/α for θ₀ gives the interval
/// θ̂ ± √(V (1 + V/τ²) (2 ln(1/α) + ln(1 + τ²/V))), the two-sided normal-mixture boundary of Howard,
/// Ramdas, McAuliffe &amp; Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences"
/// (Annals of Statistics, 2021). It covers θ at all looks simultaneously with probability 1 - α, so
/// the running intersection does too; 0 leaves the running intersection exactly when the running
/// p-value reaches α, and the sign of θ̂ at that look is the direction of the effect.</para>
/// <para><b>Variances.</b> Proportions: σ² = p̃(1 - p̃) with p̃ = (s + 1)/(n + 2) (Laplace's rule), so
/// an arm with no or only successes does not get a zero variance and a spuriously infinite Λ. Means:
/// σ² = (M + σ₀²)/n, the sample variance shrunk by one pseudo-observation at a prior variance σ₀²
/// (0.25, the largest variance of a metric in [0, 1], unless given). With these plug-in variances the
/// martingale property holds asymptotically; callers should only start testing after a minimum
/// sample size per arm, which <see cref="CanaryAnalyzer"/> does.</para>
/// <para><b>τ.</b> Any τ &gt; 0 gives a valid test; τ sets which effect sizes are found fastest
/// (those with θ² of the order of τ²), so it is chosen as the size of differences worth detecting.</para>
/// </remarks>
public static class MixtureSequentialTest
{
    /// <summary>ln Λ = ½ ln(V / (V + τ²)) + τ² (θ̂ - θ₀)² / (2 V (V + τ²)).</summary>
    public static double LogLikelihoodRatio(double estimate, double variance, double tau, double theta0 = 0)
    {
        CheckPositive(variance, nameof(variance));
        CheckPositive(tau, nameof(tau));
        double tau2 = tau * tau;
        double d = estimate - theta0;
        // ½ ln(V/(V+τ²)) = -½ ln(1 + τ²/V), written with log1p for large V.
        return -0.5 * SpecialFunctions.Log1P(tau2 / variance) + tau2 * d * d / (2 * variance * (variance + tau2));
    }

    /// <summary>Half-width √(V (1 + V/τ²) (2 ln(1/α) + ln(1 + τ²/V))) of the (1 - α) confidence sequence.</summary>
    public static double HalfWidth(double variance, double tau, double alpha)
    {
        CheckPositive(variance, nameof(variance));
        CheckPositive(tau, nameof(tau));
        CheckAlpha(alpha);
        double tau2 = tau * tau;
        return Math.Sqrt(variance * (1 + variance / tau2) * (2 * Math.Log(1 / alpha) + SpecialFunctions.Log1P(tau2 / variance)));
    }

    /// <summary>One look at an estimate θ̂ of variance V, continuing from <paramref name="previous"/>.</summary>
    public static SequentialComparison Update(double estimate, double variance, double tau, double alpha, SequentialTestState? previous)
    {
        if (!double.IsFinite(estimate)) throw new ArgumentOutOfRangeException(nameof(estimate), estimate, "The estimate must be finite.");
        CheckAlpha(alpha);
        var state = previous ?? SequentialTestState.Initial;

        double logLambda = LogLikelihoodRatio(estimate, variance, tau);
        double currentP = logLambda <= 0 ? 1 : Math.Exp(-logLambda);
        double p = Math.Min(state.PValue, currentP);

        double half = HalfWidth(variance, tau, alpha);
        double currentLower = estimate - half;
        double currentUpper = estimate + half;
        double lower = state.Lower is { } l ? Math.Max(l, currentLower) : currentLower;
        double upper = state.Upper is { } u ? Math.Min(u, currentUpper) : currentUpper;

        int direction = state.Direction;
        if (direction == 0 && logLambda >= Math.Log(1 / alpha)) direction = Math.Sign(estimate);

        var next = new SequentialTestState(p, lower, upper, direction, state.Looks + 1);
        return new SequentialComparison(estimate, Math.Sqrt(variance), logLambda, p, lower, upper, currentLower, currentUpper, alpha, tau, next);
    }

    /// <summary>
    /// One look at the difference of two proportions, candidate minus control, with
    /// Laplace-smoothed plug-in variances (see the class remarks).
    /// </summary>
    public static SequentialComparison CompareProportions(long controlEvents, long controlTrials, long candidateEvents, long candidateTrials,
        double tau, double alpha, SequentialTestState? previous)
    {
        CheckCounts(controlEvents, controlTrials, nameof(controlEvents));
        CheckCounts(candidateEvents, candidateTrials, nameof(candidateEvents));
        if (controlTrials == 0 || candidateTrials == 0) throw new ArgumentException("Both arms need at least one trial.");
        double estimate = candidateEvents / (double)candidateTrials - controlEvents / (double)controlTrials;
        double variance = SmoothedBernoulliVariance(controlEvents, controlTrials) / controlTrials
            + SmoothedBernoulliVariance(candidateEvents, candidateTrials) / candidateTrials;
        return Update(estimate, variance, tau, alpha, previous);
    }

    /// <summary>
    /// One look at the difference of two means, candidate minus control, each variance shrunk by one
    /// pseudo-observation at <paramref name="priorVariance"/> (see the class remarks).
    /// </summary>
    public static SequentialComparison CompareMeans(MetricSummary control, MetricSummary candidate, double tau, double alpha,
        double priorVariance, SequentialTestState? previous)
    {
        if (control.Count == 0 || candidate.Count == 0) throw new ArgumentException("Both arms need at least one value.");
        CheckPositive(priorVariance, nameof(priorVariance));
        double estimate = candidate.Mean - control.Mean;
        double variance = ShrunkVariance(control, priorVariance) / control.Count + ShrunkVariance(candidate, priorVariance) / candidate.Count;
        return Update(estimate, variance, tau, alpha, previous);
    }

    /// <summary>p̃(1 - p̃) with p̃ = (s + 1)/(n + 2).</summary>
    public static double SmoothedBernoulliVariance(long events, long trials)
    {
        double p = (events + 1.0) / (trials + 2.0);
        return p * (1 - p);
    }

    /// <summary>(M + σ₀²)/n: the sample variance with one pseudo-observation at σ₀².</summary>
    public static double ShrunkVariance(MetricSummary summary, double priorVariance)
        => (summary.SumSquaredDeviations + priorVariance) / Math.Max(summary.Count, 1);

    private static void CheckCounts(long events, long trials, string name)
    {
        if (trials < 0 || events < 0 || events > trials) throw new ArgumentOutOfRangeException(name, "Need 0 ≤ events ≤ trials.");
    }

    private static void CheckPositive(double value, string name)
    {
        if (!(value > 0) || double.IsInfinity(value)) throw new ArgumentOutOfRangeException(name, value, "Must be positive and finite.");
    }

    private static void CheckAlpha(double alpha)
    {
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "Alpha must lie in (0, 1).");
    }
}
