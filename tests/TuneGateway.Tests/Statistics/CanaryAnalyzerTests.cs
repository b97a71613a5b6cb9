using System.Text.Json;
using TuneGateway.Controller.Statistics;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Statistics;

public class CanaryAnalyzerTests(ITestOutputHelper output)
{
    /// <summary>Accumulates one arm's requests with given rates; the task metric is a 0/1 success score.</summary>
    private sealed class Arm(double positiveRate, double metricMean, double errorRate = 0)
    {
        public long Requests;
        public long Errors;
        public long Positive;
        public MetricSummary Metric;

        public void Serve(Random random, long count)
        {
            if (count == 0) return;
            Requests += count;
            Errors += Sampling.Binomial(random, count, errorRate);
            Positive += Sampling.Binomial(random, count, positiveRate);
            long successes = Sampling.Binomial(random, count, metricMean);
            double mean = successes / (double)count;
            Metric = Metric.Combine(new MetricSummary(count, mean, successes * (1 - mean)));
        }

        public ArmObservations Observations => new() { Requests = Requests, Errors = Errors, PositiveFeedback = Positive, TaskMetric = Metric };
    }

    private static readonly CanarySettings NoGuardrails = new()
    {
        CandidateTrafficShare = 0.1,
        Alpha = 0.05,
        MinSamplesPerArm = 500,
        MinTaskMetricSamplesPerArm = 200,
        Guardrails = new GuardrailSettings { MaxErrorRate = null },
    };

    /// <summary>Runs a canary with a 10% candidate share, looking every <paramref name="lookEvery"/> requests, until a non-Continue verdict or the end.</summary>
    private static CanaryVerdict Run(CanaryAnalyzer analyzer, Random random, Arm control, Arm candidate, int requests, int lookEvery)
    {
        CanaryVerdict? verdict = null;
        for (int i = lookEvery; i <= requests; i += lookEvery)
        {
            long toCandidate = Sampling.Binomial(random, lookEvery, analyzer.Settings.CandidateTrafficShare);
            candidate.Serve(random, toCandidate);
            control.Serve(random, lookEvery - toCandidate);
            verdict = analyzer.Analyze(control.Observations, candidate.Observations, TimeSpan.FromMinutes(i / 100.0), verdict?.State);
            if (verdict.Action != CanaryAction.Continue) return verdict;
        }
        return verdict!;
    }

    [Fact]
    public void AnAACanaryPeekedAtEveryLookRarelyDeclaresADifference()
    {
        // 400 A/A canaries of 30 000 requests (10% candidate), both metrics, a look every 500 requests:
        // the overall level is α = 0.05 (split over the two metrics), so at most 20 expected; the
        // count is Binomial(400, ≤ 0.05).
        var analyzer = new CanaryAnalyzer(NoGuardrails);
        var random = new Random(71);
        int better = 0;
        int worse = 0;
        const int runs = 400;
        for (int run = 0; run < runs; run++)
        {
            var verdict = Run(analyzer, random, new Arm(0.2, 0.6), new Arm(0.2, 0.6), 30000, 500);
            if (verdict.Decision == CanaryDecision.CandidateBetter) better++;
            if (verdict.Decision == CanaryDecision.CandidateWorse) worse++;
            Assert.NotEqual(CanaryDecision.SampleRatioMismatch, verdict.Decision);
        }
        output.WriteLine($"A/A canaries: {better} better, {worse} worse of {runs} ({(better + worse) / (double)runs:P1})");
        Assert.InRange(better + worse, 0, 20);
    }

    [Fact]
    public void ABetterCandidateIsPromotedAndAWorseOneRolledBack()
    {
        var analyzer = new CanaryAnalyzer(NoGuardrails);
        var random = new Random(72);

        var better = Run(analyzer, random, new Arm(0.20, 0.6), new Arm(0.26, 0.6), 100000, 500);
        Assert.Equal(CanaryDecision.CandidateBetter, better.Decision);
        Assert.Equal(CanaryAction.Promote, better.Action);
        Assert.Equal(1, better.PositiveFeedback!.Test.Direction);
        Assert.True(better.PositiveFeedback.Test.Lower > 0);

        var worse = Run(analyzer, random, new Arm(0.20, 0.6), new Arm(0.20, 0.5), 100000, 500);
        Assert.Equal(CanaryDecision.CandidateWorse, worse.Decision);
        Assert.Equal(CanaryAction.RollBack, worse.Action);
        Assert.Equal(-1, worse.TaskMetric!.Test.Direction);
        Assert.Contains(worse.Reasons, r => r.StartsWith("task_metric", StringComparison.Ordinal) && r.EndsWith("worse.", StringComparison.Ordinal));
    }

    [Fact]
    public void NoDecisionBeforeTheMinimumSampleSize()
    {
        var analyzer = new CanaryAnalyzer(NoGuardrails with { MinSamplesPerArm = 1000 });
        // A glaring difference, but the candidate has only 999 requests.
        var control = new ArmObservations { Requests = 9000, PositiveFeedback = 900, TaskMetric = new MetricSummary(5000, 0.6, 400) };
        var candidate = new ArmObservations { Requests = 999, PositiveFeedback = 900, TaskMetric = new MetricSummary(999, 0.9, 80) };
        var verdict = analyzer.Analyze(control, candidate, TimeSpan.FromHours(1));
        Assert.Equal(CanaryDecision.Continue, verdict.Decision);
        Assert.Null(verdict.PositiveFeedback);
        Assert.Null(verdict.State.PositiveFeedback);
        Assert.Contains(verdict.Reasons, r => r.StartsWith("Waiting for 1000 requests per arm", StringComparison.Ordinal));

        var ready = analyzer.Analyze(control, candidate with { Requests = 1000 }, TimeSpan.FromHours(1));
        Assert.Equal(CanaryDecision.CandidateBetter, ready.Decision);
    }

    [Fact]
    public void AGuardrailBreachRollsBackAtOnce()
    {
        var analyzer = new CanaryAnalyzer(NoGuardrails with { Guardrails = new GuardrailSettings { MaxErrorRate = 0.02, MaxP95LatencyMs = 2000 } });
        // Ten requests in, five failed: far too early for the A/B test, not for the guardrail.
        var control = new ArmObservations { Requests = 90, Errors = 1 };
        var candidate = new ArmObservations { Requests = 10, Errors = 5, LatenciesMs = [100, 120, 90, 110, 130, 95, 105, 115, 125, 100] };
        var verdict = analyzer.Analyze(control, candidate, TimeSpan.FromMinutes(1));
        Assert.Equal(CanaryDecision.GuardrailBreached, verdict.Decision);
        Assert.Equal(CanaryAction.RollBack, verdict.Action);
        Assert.Single(verdict.Guardrails, g => g.Breached);
        Assert.StartsWith("Guardrail error_rate breached", verdict.Reasons[0], StringComparison.Ordinal);

        var healthy = analyzer.Analyze(control, candidate with { Errors = 0 }, TimeSpan.FromMinutes(1));
        Assert.Equal(CanaryDecision.Continue, healthy.Decision);
        Assert.All(healthy.Guardrails, g => Assert.False(g.Breached));
    }

    [Fact]
    public void ABrokenSplitStopsTheCanary()
    {
        var analyzer = new CanaryAnalyzer(NoGuardrails);
        var control = new ArmObservations { Requests = 18200, PositiveFeedback = 3640 };
        var candidate = new ArmObservations { Requests = 1800, PositiveFeedback = 540 };
        var verdict = analyzer.Analyze(control, candidate, TimeSpan.FromHours(2));
        // The candidate looks better, but 9% instead of 10% of the traffic reached it.
        Assert.Equal(CanaryDecision.SampleRatioMismatch, verdict.Decision);
        Assert.True(verdict.SampleRatio.PValue < 0.001);
        Assert.Equal(1, verdict.PositiveFeedback!.Test.Direction);
    }

    [Fact]
    public void MaximumDurationOrSamplesEndInconclusive()
    {
        var control = new ArmObservations { Requests = 9000, PositiveFeedback = 1800, TaskMetric = new MetricSummary(2000, 0.6, 100) };
        var candidate = new ArmObservations { Requests = 1000, PositiveFeedback = 200, TaskMetric = new MetricSummary(250, 0.6, 12) };
        var analyzer = new CanaryAnalyzer(NoGuardrails with { MaxDuration = TimeSpan.FromHours(24) });
        Assert.Equal(CanaryDecision.Continue, analyzer.Analyze(control, candidate, TimeSpan.FromHours(23)).Decision);
        var late = analyzer.Analyze(control, candidate, TimeSpan.FromHours(24));
        Assert.Equal(CanaryDecision.Inconclusive, late.Decision);
        Assert.Equal(CanaryAction.RollBack, late.Action);

        var capped = new CanaryAnalyzer(NoGuardrails with { MaxSamplesPerArm = 1000 });
        Assert.Equal(CanaryDecision.Inconclusive, capped.Analyze(control, candidate, TimeSpan.FromHours(1)).Decision);
    }

    [Fact]
    public void EquivalenceWithinMarginsEndsWithNoDifference()
    {
        var analyzer = new CanaryAnalyzer(NoGuardrails with { PositiveFeedbackEquivalenceMargin = 0.02, TaskMetricEquivalenceMargin = 0.03 });
        var control = new ArmObservations { Requests = 360000, PositiveFeedback = 72000, TaskMetric = new MetricSummary(90000, 0.6, 90000 * 0.04) };
        var candidate = new ArmObservations { Requests = 40000, PositiveFeedback = 8000, TaskMetric = new MetricSummary(10000, 0.6, 10000 * 0.04) };
        var verdict = analyzer.Analyze(control, candidate, TimeSpan.FromHours(5));
        Assert.Equal(CanaryDecision.NoDifference, verdict.Decision);
        Assert.InRange(verdict.PositiveFeedback!.Test.Upper, 0, 0.02);

        // Without margins the same data just continue.
        Assert.Equal(CanaryDecision.Continue, new CanaryAnalyzer(NoGuardrails).Analyze(control, candidate, TimeSpan.FromHours(5)).Decision);
    }

    [Fact]
    public void EmptyArmsAndAllSuccessesAreHandled()
    {
        var analyzer = new CanaryAnalyzer(new CanarySettings());
        var empty = analyzer.Analyze(new ArmObservations(), new ArmObservations(), TimeSpan.Zero);
        Assert.Equal(CanaryDecision.Continue, empty.Decision);
        Assert.False(empty.SampleRatio.Mismatch);

        var all = new ArmObservations { Requests = 2000, PositiveFeedback = 2000, TaskMetric = new MetricSummary(2000, 1, 0) };
        var allBoth = analyzer.Analyze(all with { Requests = 18000, PositiveFeedback = 18000 }, all, TimeSpan.FromHours(1));
        Assert.Equal(CanaryDecision.Continue, allBoth.Decision);
        Assert.Equal(1, allBoth.PositiveFeedback!.Test.PValue);
    }

    [Fact]
    public void StateSurvivesAJsonRoundTripAndTheVerdictSerializes()
    {
        var analyzer = new CanaryAnalyzer(NoGuardrails);
        var random = new Random(73);
        var control = new Arm(0.2, 0.6);
        var candidate = new Arm(0.2, 0.6);
        CanaryAnalysisState? viaJson = null;
        CanaryAnalysisState? inMemory = null;
        double previousP = 1;
        for (int i = 1000; i <= 20000; i += 1000)
        {
            long toCandidate = Sampling.Binomial(random, 1000, 0.1);
            candidate.Serve(random, toCandidate);
            control.Serve(random, 1000 - toCandidate);
            var a = analyzer.Analyze(control.Observations, candidate.Observations, TimeSpan.FromMinutes(i), inMemory);
            var b = analyzer.Analyze(control.Observations, candidate.Observations, TimeSpan.FromMinutes(i), viaJson);
            inMemory = a.State;
            viaJson = JsonSerializer.Deserialize<CanaryAnalysisState>(JsonSerializer.Serialize(b.State));
            Assert.Equal(a.State, viaJson);
            Assert.Equal(a.Decision, b.Decision);
            if (a.PositiveFeedback is { } feedback)
            {
                Assert.True(feedback.Test.PValue <= previousP);
                previousP = feedback.Test.PValue;
            }
            string json = JsonSerializer.Serialize(a);
            Assert.Contains("\"Decision\"", json, StringComparison.Ordinal);
        }
        Assert.True(inMemory!.PositiveFeedback!.Looks > 10);
    }

    [Fact]
    public void InvalidSettingsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new CanaryAnalyzer(new CanarySettings { CandidateTrafficShare = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CanaryAnalyzer(new CanarySettings { Alpha = 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CanaryAnalyzer(new CanarySettings { MinSamplesPerArm = 100, MaxSamplesPerArm = 50 }));
        Assert.Throws<ArgumentException>(() => new CanaryAnalyzer(new CanarySettings()).Analyze(new ArmObservations { Requests = 1, PositiveFeedback = 2 }, new ArmObservations(), TimeSpan.Zero));
    }
}
