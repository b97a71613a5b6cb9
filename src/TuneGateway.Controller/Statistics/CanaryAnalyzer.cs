using System.Globalization;

namespace TuneGateway.Controller.Statistics;

/// <summary>
/// Turns both arms' cumulative observations into one <see cref="CanaryVerdict"/>, at every look of
/// a running canary. Pure and stateless: what must carry over between looks comes back in
/// <see cref="CanaryVerdict.State"/> and goes into the next call.
/// </summary>
/// <remarks>
/// <para><b>Order of precedence.</b></para>
/// <list type="number">
/// <item>Guardrails (<see cref="Guardrails"/>): any breach rolls back at once, whatever the sample size.</item>
/// <item>Sample ratio mismatch (<see cref="SampleRatioMismatch"/>): a broken split invalidates the comparison.</item>
/// <item>A/B metrics, each an mSPRT (<see cref="MixtureSequentialTest"/>) at level α/k for k enabled
/// metrics (Bonferroni, so that the chance of any false "better" or "worse" over the whole canary is at
/// most α), started only once both arms reach the minimum sample size (the normal approximation
/// needs it; looks before that do not count). Significantly worse on any metric: roll back.
/// Significantly better on at least one and worse on none, with every enabled metric under test:
/// promote.</item>
/// <item>Equivalence (optional): every tested metric's running confidence sequence inside its margin.</item>
/// <item>Maximum duration or sample size: inconclusive, keep control.</item>
/// </list>
/// <para>Once a metric's test rejects, its direction is kept by the state: a later look cannot undo
/// a decision the controller may already have acted on.</para>
/// </remarks>
public sealed class CanaryAnalyzer
{
    public const string PositiveFeedbackMetric = "positive_feedback_rate";
    public const string TaskMetricName = "task_metric";

    private readonly CanarySettings _settings;

    public CanaryAnalyzer(CanarySettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        _settings = settings;
    }

    public CanarySettings Settings => _settings;

    /// <summary>
    /// One look: <paramref name="control"/> and <paramref name="candidate"/> are cumulative since the
    /// canary started, <paramref name="elapsed"/> its running time, <paramref name="previous"/> the
    /// state from the previous verdict (null at the first look).
    /// </summary>
    public CanaryVerdict Analyze(ArmObservations control, ArmObservations candidate, TimeSpan elapsed, CanaryAnalysisState? previous = null)
    {
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(candidate);
        control.Validate("control");
        candidate.Validate("candidate");
        var state = previous ?? CanaryAnalysisState.Initial;

        var guardrails = Guardrails.Evaluate(_settings.Guardrails, control, candidate);
        var split = SampleRatioMismatch.Check(control.Requests, candidate.Requests, _settings.CandidateTrafficShare,
            _settings.SampleRatioPValueThreshold, _settings.SampleRatioMinRequests, _settings.SampleRatioMethod);

        int enabled = (_settings.TestPositiveFeedback ? 1 : 0) + (_settings.TestTaskMetric ? 1 : 0);
        double alphaPerMetric = _settings.Alpha / Math.Max(enabled, 1);
        bool armsReady = control.Requests >= _settings.MinSamplesPerArm && candidate.Requests >= _settings.MinSamplesPerArm;
        bool taskReady = armsReady
            && control.TaskMetric.Count >= _settings.MinTaskMetricSamplesPerArm
            && candidate.TaskMetric.Count >= _settings.MinTaskMetricSamplesPerArm;

        MetricComparison? feedback = null;
        if (_settings.TestPositiveFeedback && armsReady)
        {
            var test = MixtureSequentialTest.CompareProportions(control.PositiveFeedback, control.Requests, candidate.PositiveFeedback, candidate.Requests,
                _settings.PositiveFeedbackTau, alphaPerMetric, state.PositiveFeedback);
            feedback = new MetricComparison(PositiveFeedbackMetric, control.Requests, candidate.Requests,
                control.PositiveFeedback / (double)control.Requests, candidate.PositiveFeedback / (double)candidate.Requests, test);
        }

        MetricComparison? task = null;
        if (_settings.TestTaskMetric && taskReady)
        {
            var test = MixtureSequentialTest.CompareMeans(control.TaskMetric, candidate.TaskMetric, _settings.TaskMetricTau, alphaPerMetric,
                _settings.TaskMetricPriorVariance, state.TaskMetric);
            task = new MetricComparison(TaskMetricName, control.TaskMetric.Count, candidate.TaskMetric.Count,
                control.TaskMetric.Mean, candidate.TaskMetric.Mean, test);
        }

        var nextState = new CanaryAnalysisState(feedback?.Test.State ?? state.PositiveFeedback, task?.Test.State ?? state.TaskMetric);
        var (decision, reasons) = Decide(control, candidate, elapsed, guardrails, split, feedback, task, armsReady, taskReady);

        return new CanaryVerdict
        {
            Decision = decision,
            Reasons = reasons,
            ControlRequests = control.Requests,
            CandidateRequests = candidate.Requests,
            Elapsed = elapsed,
            SampleRatio = split,
            Guardrails = guardrails,
            PositiveFeedback = feedback,
            TaskMetric = task,
            State = nextState,
        };
    }

    private (CanaryDecision, List<string>) Decide(ArmObservations control, ArmObservations candidate, TimeSpan elapsed,
        IReadOnlyList<GuardrailResult> guardrails, SampleRatioResult split, MetricComparison? feedback, MetricComparison? task, bool armsReady, bool taskReady)
    {
        var reasons = new List<string>();

        var breached = guardrails.Where(g => g.Breached).ToList();
        if (breached.Count > 0)
        {
            reasons.AddRange(breached.Select(g => $"Guardrail {g.Name} breached: {g.Detail}."));
            return (CanaryDecision.GuardrailBreached, reasons);
        }

        if (split.Mismatch)
        {
            reasons.Add(Invariant($"Sample ratio mismatch: candidate share {split.ObservedCandidateShare:P2} of {split.ControlCount + split.CandidateCount} requests, configured {split.ExpectedCandidateShare:P2} (always-valid p = {split.SequentialPValue:G3}, chi-square p = {split.ChiSquarePValue:G3})."));
            return (CanaryDecision.SampleRatioMismatch, reasons);
        }

        var tested = new[] { feedback, task }.OfType<MetricComparison>().ToList();
        var worse = tested.Where(c => c.Test.Direction < 0).ToList();
        if (worse.Count > 0)
        {
            reasons.AddRange(worse.Select(c => Describe(c, "worse")));
            return (CanaryDecision.CandidateWorse, reasons);
        }

        bool allUnderTest = (!_settings.TestPositiveFeedback || feedback is not null) && (!_settings.TestTaskMetric || task is not null);
        var better = tested.Where(c => c.Test.Direction > 0).ToList();
        if (better.Count > 0 && allUnderTest)
        {
            reasons.AddRange(better.Select(c => Describe(c, "better")));
            reasons.AddRange(tested.Except(better).Select(c => Describe(c, "not significantly different")));
            return (CanaryDecision.CandidateBetter, reasons);
        }

        if (tested.Count > 0 && allUnderTest && tested.All(Equivalent))
        {
            reasons.AddRange(tested.Select(c => Describe(c, "equivalent within its margin")));
            return (CanaryDecision.NoDifference, reasons);
        }

        bool durationReached = elapsed >= _settings.MaxDuration;
        bool samplesReached = _settings.MaxSamplesPerArm is { } max && control.Requests >= max && candidate.Requests >= max;

        if (!armsReady)
            reasons.Add($"Waiting for {_settings.MinSamplesPerArm} requests per arm (control {control.Requests}, candidate {candidate.Requests}).");
        else if (_settings.TestTaskMetric && !taskReady)
            reasons.Add($"Waiting for {_settings.MinTaskMetricSamplesPerArm} scored requests per arm (control {control.TaskMetric.Count}, candidate {candidate.TaskMetric.Count}).");
        reasons.AddRange(better.Select(c => Describe(c, "better (waiting for the other metric before promoting)")));
        reasons.AddRange(tested.Except(better).Select(c => Describe(c, "not significantly different yet")));
        if (_settings.TestPositiveFeedback is false && _settings.TestTaskMetric is false)
            reasons.Add("No A/B metric is enabled; only guardrails are checked.");

        if (durationReached || samplesReached)
        {
            reasons.Insert(0, durationReached
                ? $"Maximum duration {_settings.MaxDuration} reached without a decision."
                : $"Maximum of {_settings.MaxSamplesPerArm} requests per arm reached without a decision.");
            return (CanaryDecision.Inconclusive, reasons);
        }
        return (CanaryDecision.Continue, reasons);
    }

    private bool Equivalent(MetricComparison comparison)
    {
        double? margin = comparison.Metric == PositiveFeedbackMetric ? _settings.PositiveFeedbackEquivalenceMargin : _settings.TaskMetricEquivalenceMargin;
        return margin is { } m && comparison.Test.Lower > -m && comparison.Test.Upper < m;
    }

    private static string Describe(MetricComparison c, string verdict)
    {
        var t = c.Test;
        return Invariant($"{c.Metric}: candidate {c.CandidateValue:G4} vs control {c.ControlValue:G4} (n = {c.CandidateCount} / {c.ControlCount}), difference {t.Estimate:+0.####;-0.####;0}, ")
            + Invariant($"{1 - t.Alpha:P1} confidence sequence [{t.Lower:+0.####;-0.####;0}, {t.Upper:+0.####;-0.####;0}], always-valid p = {t.PValue:G3}: {verdict}.");
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
