namespace TuneGateway.Controller.Statistics;

/// <summary>The outcome of an always-valid test that a Bernoulli rate exceeds a limit.</summary>
/// <param name="Events">Number of events (errors, slow requests, ...).</param>
/// <param name="Trials">Number of trials (requests).</param>
/// <param name="Limit">p₀, the largest acceptable rate.</param>
/// <param name="LogEValue">ln M, the log of the mixture likelihood ratio (an e-value for H₀: p ≤ p₀).</param>
/// <param name="PValue">min(1, 1/M): valid at every sample size, however often it is checked.</param>
/// <param name="Exceeded">M ≥ 1/α: the data show, at level α, that the rate is above the limit.</param>
public sealed record RateLimitTestResult(long Events, long Trials, double Limit, double LogEValue, double PValue, bool Exceeded)
{
    /// <summary>The observed rate events / trials (0 without trials).</summary>
    public double Rate => Trials == 0 ? 0 : Events / (double)Trials;
}

/// <summary>
/// An always-valid one-sided test of H₀: p ≤ p₀ for a Bernoulli rate p (error rate, negative
/// feedback rate, the fraction of requests slower than a latency limit), safe to evaluate after
/// every request.
/// </summary>
/// <remarks>
/// <para><b>Statistic.</b> With S events in n trials and F = n - S, the mixture likelihood ratio
/// M = [∫ θ^S (1-θ)^F π(dθ)] / [p₀^S (1-p₀)^F], π uniform on (p₀, b], b = min(1, c·p₀)
/// (c = <see cref="DefaultUpperFactor"/> unless given): "the rate is somewhere between the limit
/// and c times the limit". In closed form ∫_{p₀}^{b} θ^S (1-θ)^F dθ = B(S+1, F+1)·(I_b - I_{p₀}) with
/// I the regularized incomplete beta function at (S+1, F+1), evaluated in logs, as a difference of
/// lower tails when the likelihood peaks above p₀ and of upper tails otherwise (so neither
/// difference cancels catastrophically).</para>
/// <para><b>Validity.</b> For one θ &gt; p₀ and a true rate p ≤ p₀, the likelihood-ratio factor of
/// one trial has expectation p·θ/p₀ + (1-p)(1-θ)/(1-p₀) ≤ 1 (it is increasing in p and equals 1 at
/// p = p₀), so each θ gives a non-negative supermartingale starting at 1, and so does the mixture.
/// Ville's inequality then gives P(∃n: Mₙ ≥ 1/α) ≤ α: the test may be checked after every request
/// without inflating its false-alarm rate (Robbins, "Statistical methods related to the law of the
/// iterated logarithm", 1970; Ramdas, Grünwald, Vovk &amp; Shafer, "Game-theoretic statistics and
/// safe anytime-valid inference", 2023). No minimum count is needed for validity: with a limit of
/// 2% and c = 4, three failures in the first three requests already give M ≈ 21.</para>
/// <para><b>Limits at the edges.</b> p₀ ≤ 0 means "no events at all": exceeded as soon as one occurs.
/// p₀ ≥ 1 can never be exceeded.</para>
/// </remarks>
public static class RateLimitTest
{
    /// <summary>c in the prior's upper end b = min(1, c·p₀).</summary>
    public const double DefaultUpperFactor = 4;

    /// <summary>Tests H₀: p ≤ <paramref name="limit"/> at level <paramref name="alpha"/>.</summary>
    public static RateLimitTestResult Test(long events, long trials, double limit, double alpha, double upperFactor = DefaultUpperFactor)
    {
        if (!(alpha > 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "Alpha must lie in (0, 1).");
        double logE = LogEValue(events, trials, limit, upperFactor);
        double p = logE <= 0 ? 1 : Math.Exp(-logE);
        return new RateLimitTestResult(events, trials, limit, logE, p, logE >= Math.Log(1 / alpha));
    }

    /// <summary>ln M for <paramref name="events"/> in <paramref name="trials"/> against the limit p₀ (see the class remarks).</summary>
    public static double LogEValue(long events, long trials, double limit, double upperFactor = DefaultUpperFactor)
    {
        if (events < 0 || trials < 0 || events > trials) throw new ArgumentOutOfRangeException(nameof(events), "Need 0 ≤ events ≤ trials.");
        if (double.IsNaN(limit)) throw new ArgumentOutOfRangeException(nameof(limit), "The limit must be a number.");
        if (!(upperFactor > 1) || double.IsInfinity(upperFactor)) throw new ArgumentOutOfRangeException(nameof(upperFactor), upperFactor, "The upper factor must be finite and above 1.");
        if (trials == 0) return 0;
        if (limit >= 1) return double.NegativeInfinity;
        if (limit <= 0) return events > 0 ? double.PositiveInfinity : 0;

        double s = events;
        double f = trials - events;
        double p0 = limit;
        double upper = Math.Min(1, upperFactor * p0);

        double logDelta;
        if (s / (s + f) > p0)
        {
            // Likelihood peaks above p₀: I_b - I_p₀ with I_p₀ the smaller lower tail.
            double logB = upper >= 1 ? 0 : SpecialFunctions.LogRegularizedIncompleteBeta(upper, s + 1, f + 1);
            double logP0 = SpecialFunctions.LogRegularizedIncompleteBeta(p0, s + 1, f + 1);
            logDelta = logB + LogOneMinusExp(logP0 - logB);
        }
        else
        {
            // Likelihood peaks at or below p₀: U(p₀) - U(b) with U(x) = 1 - I_x = I_(1-x)(F+1, S+1).
            double logUp0 = SpecialFunctions.LogRegularizedIncompleteBeta(1 - p0, f + 1, s + 1);
            double logUb = upper >= 1 ? double.NegativeInfinity : SpecialFunctions.LogRegularizedIncompleteBeta(1 - upper, f + 1, s + 1);
            logDelta = logUp0 + LogOneMinusExp(logUb - logUp0);
        }

        double logIntegral = SpecialFunctions.LogBeta(s + 1, f + 1) + logDelta;
        return logIntegral - Math.Log(upper - p0) - s * Math.Log(p0) - f * SpecialFunctions.Log1P(-p0);
    }

    /// <summary>ln(1 - eˣ) for x ≤ 0, accurate near both ends.</summary>
    private static double LogOneMinusExp(double x)
    {
        if (x >= 0) return double.NegativeInfinity;
        return x > -Math.Log(2) ? Math.Log(-SpecialFunctions.ExpM1(x)) : SpecialFunctions.Log1P(-Math.Exp(x));
    }
}
