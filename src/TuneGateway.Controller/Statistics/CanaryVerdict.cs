namespace TuneGateway.Controller.Statistics;

/// <summary>The outcome of one look at a canary.</summary>
public enum CanaryDecision
{
    /// <summary>Keep collecting data.</summary>
    Continue,
    /// <summary>Significantly better on at least one tested metric and significantly worse on none: promote.</summary>
    CandidateBetter,
    /// <summary>Significantly worse on a tested metric: roll back.</summary>
    CandidateWorse,
    /// <summary>Every tested metric's confidence sequence lies within its equivalence margin: keep control.</summary>
    NoDifference,
    /// <summary>Maximum duration or sample size reached without a decision: keep control.</summary>
    Inconclusive,
    /// <summary>A guardrail is breached: roll back at once.</summary>
    GuardrailBreached,
    /// <summary>The observed split does not match the configured one: the comparison is invalid, roll back and investigate.</summary>
    SampleRatioMismatch,
}

/// <summary>What the controller does with a verdict.</summary>
public enum CanaryAction
{
    Continue,
    Promote,
    RollBack,
}

/// <summary>One tested metric: both arms' values and the sequential test of their difference.</summary>
/// <param name="Metric"><c>positive_feedback_rate</c> or <c>task_metric</c>.</param>
/// <param name="ControlCount">Trials (requests or scored requests) on control.</param>
/// <param name="CandidateCount">Trials on the candidate.</param>
/// <param name="ControlValue">Control's rate or mean.</param>
/// <param name="CandidateValue">The candidate's rate or mean.</param>
/// <param name="Test">The mSPRT look (difference candidate - control, always-valid p-value and confidence sequence).</param>
public sealed record MetricComparison(string Metric, long ControlCount, long CandidateCount, double ControlValue, double CandidateValue, SequentialComparison Test);

/// <summary>
/// What one look at a canary must hand to the next: the sequential tests' states. Null members
/// mean the test has not started (minimum sample size not reached). Serializable with System.Text.Json.
/// </summary>
public sealed record CanaryAnalysisState(SequentialTestState? PositiveFeedback, SequentialTestState? TaskMetric)
{
    public static CanaryAnalysisState Initial { get; } = new(null, null);
}

/// <summary>
/// The verdict of one look at a canary: a decision, the reasons in words, and every number behind
/// it, for the controller to act on and the dashboard to show.
/// </summary>
public sealed record CanaryVerdict
{
    public required CanaryDecision Decision { get; init; }

    /// <summary>The action the decision calls for.</summary>
    public CanaryAction Action => Decision switch
    {
        CanaryDecision.Continue => CanaryAction.Continue,
        CanaryDecision.CandidateBetter => CanaryAction.Promote,
        _ => CanaryAction.RollBack,
    };

    /// <summary>Why, one sentence per finding, most important first.</summary>
    public required IReadOnlyList<string> Reasons { get; init; }

    public required long ControlRequests { get; init; }
    public required long CandidateRequests { get; init; }
    public required TimeSpan Elapsed { get; init; }

    public required SampleRatioResult SampleRatio { get; init; }
    public required IReadOnlyList<GuardrailResult> Guardrails { get; init; }

    /// <summary>The positive-feedback comparison, null if not tested or before the minimum sample size.</summary>
    public MetricComparison? PositiveFeedback { get; init; }

    /// <summary>The task metric comparison, null if not tested or before its minimum sample size.</summary>
    public MetricComparison? TaskMetric { get; init; }

    /// <summary>Pass to the next call of <see cref="CanaryAnalyzer.Analyze"/>.</summary>
    public required CanaryAnalysisState State { get; init; }
}
