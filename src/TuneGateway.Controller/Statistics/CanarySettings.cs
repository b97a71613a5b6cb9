namespace TuneGateway.Controller.Statistics;

/// <summary>The statistical part of a canary plan: split, test levels, sample sizes, guardrails.</summary>
public sealed record CanarySettings
{
    /// <summary>The configured share of traffic routed to the candidate (the rest goes to control).</summary>
    public double CandidateTrafficShare { get; init; } = 0.1;

    /// <summary>
    /// Overall level of the A/B decision: the chance of declaring a difference (either way) when
    /// there is none, however often the canary is checked. Split evenly over the enabled metrics
    /// (Bonferroni).
    /// </summary>
    public double Alpha { get; init; } = 0.05;

    /// <summary>Test the positive-feedback rate (positive ratings per request).</summary>
    public bool TestPositiveFeedback { get; init; } = true;

    /// <summary>τ of the mixing distribution for the positive-feedback rate difference: the size of difference worth detecting.</summary>
    public double PositiveFeedbackTau { get; init; } = 0.03;

    /// <summary>Test the task metric (mean of a per-request score).</summary>
    public bool TestTaskMetric { get; init; } = true;

    /// <summary>τ of the mixing distribution for the task metric difference.</summary>
    public double TaskMetricTau { get; init; } = 0.05;

    /// <summary>σ₀², the prior variance one pseudo-observation adds to each arm's task metric variance (0.25: the largest for a score in [0, 1]).</summary>
    public double TaskMetricPriorVariance { get; init; } = 0.25;

    /// <summary>Requests each arm needs before any A/B decision (guardrails and SRM do not wait).</summary>
    public long MinSamplesPerArm { get; init; } = 1000;

    /// <summary>Scored requests each arm needs before the task metric is tested.</summary>
    public long MinTaskMetricSamplesPerArm { get; init; } = 200;

    /// <summary>Stop with <see cref="CanaryDecision.Inconclusive"/> once both arms have this many requests (null: no cap).</summary>
    public long? MaxSamplesPerArm { get; init; }

    /// <summary>Stop with <see cref="CanaryDecision.Inconclusive"/> after this long.</summary>
    public TimeSpan MaxDuration { get; init; } = TimeSpan.FromDays(3);

    /// <summary>
    /// Optional equivalence margin for the positive-feedback rate: when the whole running confidence
    /// sequence lies within ±margin (and the task metric's within its margin, if tested), the canary
    /// stops with <see cref="CanaryDecision.NoDifference"/>. Null: never stop for equivalence.
    /// </summary>
    public double? PositiveFeedbackEquivalenceMargin { get; init; }

    /// <summary>Optional equivalence margin for the task metric (see <see cref="PositiveFeedbackEquivalenceMargin"/>).</summary>
    public double? TaskMetricEquivalenceMargin { get; init; }

    /// <summary>Sample ratio mismatch is flagged when the split's chi-square p-value is below this.</summary>
    public double SampleRatioPValueThreshold { get; init; } = SampleRatioMismatch.DefaultPValueThreshold;

    /// <summary>Which test flags a mismatch: the always-valid mixture (default; the split is checked at every look) or the chi-square test.</summary>
    public SampleRatioMethod SampleRatioMethod { get; init; } = SampleRatioMethod.AlwaysValid;

    /// <summary>Total requests before the split is checked.</summary>
    public long SampleRatioMinRequests { get; init; } = 200;

    public GuardrailSettings Guardrails { get; init; } = new();

    /// <summary>Throws if a setting is out of range.</summary>
    public void Validate()
    {
        if (!(CandidateTrafficShare > 0 && CandidateTrafficShare < 1)) throw new ArgumentOutOfRangeException(nameof(CandidateTrafficShare), CandidateTrafficShare, "Must lie in (0, 1).");
        if (!(Alpha > 0 && Alpha < 1)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "Must lie in (0, 1).");
        if (!(PositiveFeedbackTau > 0) || !(TaskMetricTau > 0)) throw new ArgumentOutOfRangeException(nameof(PositiveFeedbackTau), "τ must be positive.");
        if (!(TaskMetricPriorVariance > 0)) throw new ArgumentOutOfRangeException(nameof(TaskMetricPriorVariance), TaskMetricPriorVariance, "Must be positive.");
        if (MinSamplesPerArm < 1 || MinTaskMetricSamplesPerArm < 1) throw new ArgumentOutOfRangeException(nameof(MinSamplesPerArm), "Minimum sample sizes must be at least 1.");
        if (MaxSamplesPerArm is { } max && max < MinSamplesPerArm) throw new ArgumentOutOfRangeException(nameof(MaxSamplesPerArm), max, "Must not be below the minimum.");
        if (MaxDuration <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(MaxDuration), MaxDuration, "Must be positive.");
        if (PositiveFeedbackEquivalenceMargin is { } a && !(a > 0)) throw new ArgumentOutOfRangeException(nameof(PositiveFeedbackEquivalenceMargin), a, "Must be positive.");
        if (TaskMetricEquivalenceMargin is { } b && !(b > 0)) throw new ArgumentOutOfRangeException(nameof(TaskMetricEquivalenceMargin), b, "Must be positive.");
        if (!(SampleRatioPValueThreshold > 0 && SampleRatioPValueThreshold < 1)) throw new ArgumentOutOfRangeException(nameof(SampleRatioPValueThreshold), SampleRatioPValueThreshold, "Must lie in (0, 1).");
        ArgumentNullException.ThrowIfNull(Guardrails);
        Guardrails.Validate();
    }
}
