namespace TuneGateway.Controller.Statistics;

/// <summary>
/// Limits that roll a canary back at once when the candidate breaches them. Each limit is optional
/// (null: not checked). Absolute limits apply to the candidate alone; relative limits compare it
/// with control.
/// </summary>
public sealed record GuardrailSettings
{
    /// <summary>Level of each guardrail check: the chance that a candidate exactly at a limit is ever rolled back by that check.</summary>
    public double Alpha { get; init; } = 0.01;

    /// <summary>Largest acceptable error rate (fraction of requests).</summary>
    public double? MaxErrorRate { get; init; } = 0.05;

    /// <summary>Largest acceptable negative-feedback rate (fraction of requests).</summary>
    public double? MaxNegativeFeedbackRate { get; init; }

    /// <summary>Largest acceptable latency quantile (at <see cref="QuantileLevel"/>) in milliseconds.</summary>
    public double? MaxP95LatencyMs { get; init; }

    /// <summary>Largest acceptable time-to-first-token quantile (at <see cref="QuantileLevel"/>) in milliseconds.</summary>
    public double? MaxP95TimeToFirstTokenMs { get; init; }

    /// <summary>Largest acceptable increase of the error rate over control (absolute, e.g. 0.01 = one percentage point).</summary>
    public double? MaxErrorRateIncrease { get; init; }

    /// <summary>Largest acceptable increase of the negative-feedback rate over control (absolute).</summary>
    public double? MaxNegativeFeedbackRateIncrease { get; init; }

    /// <summary>Largest acceptable ratio of the candidate's latency quantile to control's observed one.</summary>
    public double? MaxP95LatencyRatio { get; init; }

    /// <summary>Largest acceptable ratio of the candidate's time-to-first-token quantile to control's observed one.</summary>
    public double? MaxP95TimeToFirstTokenRatio { get; init; }

    /// <summary>The quantile the latency guardrails are about (0.95).</summary>
    public double QuantileLevel { get; init; } = 0.95;

    /// <summary>c in the prior of <see cref="RateLimitTest"/>: breaches up to c times the limit are detected fastest.</summary>
    public double UpperFactor { get; init; } = RateLimitTest.DefaultUpperFactor;

    /// <summary>Requests (or latency samples) each arm needs before a relative guardrail is checked.</summary>
    public long MinSamplesForRelative { get; init; } = 200;

    /// <summary>τ of the mixture confidence sequence used by the relative rate guardrails.</summary>
    public double RelativeTau { get; init; } = 0.02;

    /// <summary>Throws if a setting is out of range.</summary>
    public void Validate()
    {
        if (!(Alpha > 0 && Alpha < 1)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "Alpha must lie in (0, 1).");
        if (!(QuantileLevel > 0 && QuantileLevel < 1)) throw new ArgumentOutOfRangeException(nameof(QuantileLevel), QuantileLevel, "The quantile level must lie in (0, 1).");
        if (!(UpperFactor > 1)) throw new ArgumentOutOfRangeException(nameof(UpperFactor), UpperFactor, "The upper factor must exceed 1.");
        if (!(RelativeTau > 0)) throw new ArgumentOutOfRangeException(nameof(RelativeTau), RelativeTau, "τ must be positive.");
        if (MinSamplesForRelative < 2) throw new ArgumentOutOfRangeException(nameof(MinSamplesForRelative), MinSamplesForRelative, "Need at least 2 samples.");
        CheckRate(MaxErrorRate, nameof(MaxErrorRate));
        CheckRate(MaxNegativeFeedbackRate, nameof(MaxNegativeFeedbackRate));
        CheckRate(MaxErrorRateIncrease, nameof(MaxErrorRateIncrease));
        CheckRate(MaxNegativeFeedbackRateIncrease, nameof(MaxNegativeFeedbackRateIncrease));
        CheckPositive(MaxP95LatencyMs, nameof(MaxP95LatencyMs));
        CheckPositive(MaxP95TimeToFirstTokenMs, nameof(MaxP95TimeToFirstTokenMs));
        CheckPositive(MaxP95LatencyRatio, nameof(MaxP95LatencyRatio));
        CheckPositive(MaxP95TimeToFirstTokenRatio, nameof(MaxP95TimeToFirstTokenRatio));

        static void CheckRate(double? value, string name)
        {
            if (value is { } v && !(v >= 0 && v <= 1)) throw new ArgumentOutOfRangeException(name, v, "A rate limit must lie in [0, 1].");
        }

        static void CheckPositive(double? value, string name)
        {
            if (value is { } v && !(v > 0 && double.IsFinite(v))) throw new ArgumentOutOfRangeException(name, v, "Must be positive and finite.");
        }
    }
}

/// <summary>One guardrail check.</summary>
/// <param name="Name">Stable identifier, e.g. <c>error_rate</c>, <c>p95_latency_ms</c>, <c>error_rate_increase</c>.</param>
/// <param name="Observed">The candidate's observed value of the guarded quantity (rate, quantile in ms, or difference from control); null without data.</param>
/// <param name="Limit">The limit it is held to (for ratio guardrails: ratio × control's quantile, null until control has enough samples).</param>
/// <param name="Count">Candidate observations behind the check.</param>
/// <param name="PValue">Always-valid p-value of "the limit is respected"; 1 when not evaluated.</param>
/// <param name="Evaluated">False when an arm lacks the data the check needs (the check then cannot breach).</param>
/// <param name="Breached">Whether the guardrail is breached: roll back.</param>
/// <param name="Detail">A sentence for logs and the dashboard.</param>
public sealed record GuardrailResult(string Name, double? Observed, double? Limit, long Count, double PValue, bool Evaluated, bool Breached, string Detail);

/// <summary>
/// Guardrail checks for a canary. Every check is a one-sided always-valid test at
/// <see cref="GuardrailSettings.Alpha"/>, so it can run at every look: a guardrail is breached when
/// the data show that the limit is exceeded, not merely when the observed value is above it.
/// </summary>
/// <remarks>
/// <para><b>Why a test and not the observed value.</b> The controller checks guardrails after
/// every batch of requests for the whole canary; comparing the raw observed rate with the limit
/// would roll back most candidates that sit just under a limit (an observed rate fluctuates above
/// its mean about half the time early on), and a minimum count only postpones that. An always-valid
/// test bounds the chance of ever rolling back a candidate that respects the limit by α, yet reacts
/// within a handful of requests to gross failures (three errors in the first three requests breach
/// a 2% error-rate limit at α = 0.05).</para>
/// <para><b>Rates</b> (error, negative feedback): <see cref="RateLimitTest"/>, H₀: rate ≤ limit.</para>
/// <para><b>Latency quantiles.</b> For any distribution the q-quantile inf{x : F(x) ≥ q} is ≤ L
/// exactly when P(X &gt; L) ≤ 1 - q. So "p95 ≤ L" is tested as the rate of requests slower than L
/// being at most 1 - q (5% for the p95), with the same <see cref="RateLimitTest"/>:
/// distribution-free, no density estimate needed.
/// The reported observed p95 is the interpolated sample quantile.</para>
/// <para><b>Relative rate limits</b> (increase over control at most δ): the two-sided (1 - α)
/// normal-mixture confidence sequence of <see cref="MixtureSequentialTest"/> for candidate - control;
/// breached when its lower end exceeds δ (then the sequence would have to miss the true difference,
/// which happens with probability ≤ α over all looks). Checked only once each arm has
/// <see cref="GuardrailSettings.MinSamplesForRelative"/> requests, for the normal approximation.</para>
/// <para><b>Relative latency limits</b> (candidate quantile at most r × control's): the limit
/// L = r × control's observed quantile is treated as known and tested as an absolute limit. This
/// ignores control's sampling error, which is small when control has most of the traffic and at
/// least <see cref="GuardrailSettings.MinSamplesForRelative"/> samples; it is an approximation.</para>
/// </remarks>
public static class Guardrails
{
    /// <summary>Runs every configured guardrail, in a fixed order.</summary>
    public static IReadOnlyList<GuardrailResult> Evaluate(GuardrailSettings settings, ArmObservations control, ArmObservations candidate)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(candidate);
        settings.Validate();
        control.Validate("control");
        candidate.Validate("candidate");

        var results = new List<GuardrailResult>();
        if (settings.MaxErrorRate is { } maxError)
            results.Add(AbsoluteRate("error_rate", candidate.Errors, candidate.Requests, maxError, settings));
        if (settings.MaxNegativeFeedbackRate is { } maxNegative)
            results.Add(AbsoluteRate("negative_feedback_rate", candidate.NegativeFeedback, candidate.Requests, maxNegative, settings));
        if (settings.MaxP95LatencyMs is { } maxLatency)
            results.Add(AbsoluteQuantile("p95_latency_ms", candidate.LatenciesMs, maxLatency, settings));
        if (settings.MaxP95TimeToFirstTokenMs is { } maxTtft)
            results.Add(AbsoluteQuantile("p95_ttft_ms", candidate.TimeToFirstTokenMs, maxTtft, settings));
        if (settings.MaxErrorRateIncrease is { } errorIncrease)
            results.Add(RelativeRate("error_rate_increase", control.Errors, control.Requests, candidate.Errors, candidate.Requests, errorIncrease, settings));
        if (settings.MaxNegativeFeedbackRateIncrease is { } negativeIncrease)
            results.Add(RelativeRate("negative_feedback_rate_increase", control.NegativeFeedback, control.Requests, candidate.NegativeFeedback, candidate.Requests, negativeIncrease, settings));
        if (settings.MaxP95LatencyRatio is { } latencyRatio)
            results.Add(RelativeQuantile("p95_latency_ratio", control.LatenciesMs, candidate.LatenciesMs, latencyRatio, settings));
        if (settings.MaxP95TimeToFirstTokenRatio is { } ttftRatio)
            results.Add(RelativeQuantile("p95_ttft_ratio", control.TimeToFirstTokenMs, candidate.TimeToFirstTokenMs, ttftRatio, settings));
        return results;
    }

    private static GuardrailResult AbsoluteRate(string name, long events, long requests, double limit, GuardrailSettings settings)
    {
        var test = RateLimitTest.Test(events, requests, limit, settings.Alpha, settings.UpperFactor);
        double? observed = requests == 0 ? null : test.Rate;
        string detail = $"{events}/{requests} = {test.Rate:P2} against a limit of {limit:P2} (always-valid p = {test.PValue:G3})";
        return new GuardrailResult(name, observed, limit, requests, test.PValue, true, test.Exceeded, detail);
    }

    private static GuardrailResult AbsoluteQuantile(string name, IReadOnlyList<double> values, double limitMs, GuardrailSettings settings)
    {
        double[] sorted = Sorted(values, name);
        long slower = sorted.Length - UpperBoundIndex(sorted, limitMs);
        double allowed = 1 - settings.QuantileLevel;
        var test = RateLimitTest.Test(slower, sorted.Length, allowed, settings.Alpha, settings.UpperFactor);
        double? observed = sorted.Length == 0 ? null : Quantiles.Interpolated(sorted, settings.QuantileLevel);
        string detail = sorted.Length == 0
            ? $"no samples yet; limit {limitMs:G4} ms"
            : $"p{settings.QuantileLevel * 100:G3} = {observed:G4} ms against {limitMs:G4} ms; {slower}/{sorted.Length} slower than the limit, at most {allowed:P1} allowed (always-valid p = {test.PValue:G3})";
        return new GuardrailResult(name, observed, limitMs, sorted.Length, test.PValue, true, test.Exceeded, detail);
    }

    private static GuardrailResult RelativeRate(string name, long controlEvents, long controlRequests, long candidateEvents, long candidateRequests,
        double maxIncrease, GuardrailSettings settings)
    {
        if (controlRequests < settings.MinSamplesForRelative || candidateRequests < settings.MinSamplesForRelative)
        {
            return new GuardrailResult(name, null, maxIncrease, candidateRequests, 1, false, false,
                $"waiting for {settings.MinSamplesForRelative} requests per arm (control {controlRequests}, candidate {candidateRequests})");
        }

        var comparison = MixtureSequentialTest.CompareProportions(controlEvents, controlRequests, candidateEvents, candidateRequests,
            settings.RelativeTau, settings.Alpha, previous: null);
        double variance = comparison.StandardError * comparison.StandardError;
        double p = comparison.Estimate <= maxIncrease
            ? 1
            : Math.Min(1, Math.Exp(-MixtureSequentialTest.LogLikelihoodRatio(comparison.Estimate, variance, settings.RelativeTau, maxIncrease)));
        bool breached = comparison.CurrentLower > maxIncrease;
        string detail = $"candidate - control = {comparison.Estimate:+0.00%;-0.00%}, {1 - settings.Alpha:P0} confidence sequence "
            + $"[{comparison.CurrentLower:+0.00%;-0.00%}, {comparison.CurrentUpper:+0.00%;-0.00%}], at most {maxIncrease:+0.00%} allowed";
        return new GuardrailResult(name, comparison.Estimate, maxIncrease, candidateRequests, p, true, breached, detail);
    }

    private static GuardrailResult RelativeQuantile(string name, IReadOnlyList<double> control, IReadOnlyList<double> candidate, double ratio, GuardrailSettings settings)
    {
        double[] controlSorted = Sorted(control, name);
        double[] candidateSorted = Sorted(candidate, name);
        if (controlSorted.Length < settings.MinSamplesForRelative || candidateSorted.Length == 0)
        {
            return new GuardrailResult(name, candidateSorted.Length == 0 ? null : Quantiles.Interpolated(candidateSorted, settings.QuantileLevel),
                null, candidateSorted.Length, 1, false, false,
                $"waiting for {settings.MinSamplesForRelative} control samples (have {controlSorted.Length}) and candidate samples (have {candidateSorted.Length})");
        }

        double limit = ratio * Quantiles.Interpolated(controlSorted, settings.QuantileLevel);
        var absolute = AbsoluteQuantile(name, candidateSorted, limit, settings);
        return absolute with { Detail = $"limit {ratio:G3} × control's {limit / ratio:G4} ms; " + absolute.Detail };
    }

    private static double[] Sorted(IReadOnlyList<double> values, string name)
    {
        double[] sorted = [.. values];
        foreach (double v in sorted)
        {
            if (double.IsNaN(v)) throw new ArgumentException($"{name}: latency samples must not contain NaN.");
        }
        Array.Sort(sorted);
        return sorted;
    }

    /// <summary>Index of the first element greater than <paramref name="value"/>.</summary>
    private static int UpperBoundIndex(double[] sorted, double value)
    {
        int lo = 0;
        int hi = sorted.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] <= value) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }
}
