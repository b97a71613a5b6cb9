using System.Text.Json;
using Microsoft.Extensions.Logging;
using TuneGateway.Controller.Statistics;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Controller.Pipelines;

/// <summary>
/// Watches a running canary: at every check it rebuilds both arms' observations from the
/// traffic log and feedback since the canary began, asks <see cref="CanaryAnalyzer"/> (always-valid
/// sequential tests, sample-ratio check, guardrails) for a verdict, and acts on it: roll back at
/// once on a breached guardrail or a worse candidate; promote a better one, or ask an operator
/// to approve when the pipeline's policy says so (guardrails stay armed while it waits).
/// </summary>
public sealed class CanaryMonitor(LifecycleManager lifecycle, ITrafficReader traffic, IJobHistory history, ILogger<CanaryMonitor> logger, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private const string Actor = "canary";

    /// <summary>
    /// Checks the canary once its check interval has passed since its start or its last check: the
    /// monitor job fires at the shorter of the canary's and the triggers' intervals, and a canary
    /// is judged at its own pace.
    /// </summary>
    public async Task<CanaryVerdict?> CheckIfDueAsync(PipelineDefinition pipeline, CancellationToken cancellationToken)
    {
        var state = await lifecycle.CanaryAsync(pipeline.Adapter, cancellationToken).ConfigureAwait(false);
        if (state is null || _time.GetUtcNow() - (state.CheckedAt ?? state.StartedAt) < pipeline.Canary.CheckInterval) return null;
        return await CheckAsync(pipeline, cancellationToken).ConfigureAwait(false);
    }

    public async Task<CanaryVerdict?> CheckAsync(PipelineDefinition pipeline, CancellationToken cancellationToken)
    {
        string adapter = pipeline.Adapter;
        var state = await lifecycle.CanaryAsync(adapter, cancellationToken).ConfigureAwait(false);
        if (state is null) return null;

        var (control, candidate) = await ObserveAsync(adapter, state, cancellationToken).ConfigureAwait(false);
        var analyzer = new CanaryAnalyzer(pipeline.Canary.Settings with { CandidateTrafficShare = state.Share });
        var elapsed = _time.GetUtcNow() - state.StartedAt;
        var verdict = analyzer.Analyze(control, candidate, elapsed, state.AnalysisState());
        ControllerTelemetry.RecordCanary(adapter, verdict);
        state = await lifecycle.SaveCanaryAsync(adapter, state.WithVerdict(verdict) with { CheckedAt = _time.GetUtcNow() }, cancellationToken).ConfigureAwait(false);

        string reasons = string.Join("; ", verdict.Reasons);
        switch (verdict.Action)
        {
            case CanaryAction.RollBack:
                await lifecycle.RollbackAsync(adapter, null, Actor, $"canary {verdict.Decision}: {reasons}", cancellationToken).ConfigureAwait(false);
                await RecordAsync(adapter, state, PipelineStep.Decide, StepStatus.Failed, $"rolled back: {verdict.Decision}: {reasons}", verdict, cancellationToken).ConfigureAwait(false);
                break;
            case CanaryAction.Promote when pipeline.Promotion == PromotionPolicy.Auto:
                await lifecycle.PromoteAsync(adapter, state.Candidate, Actor, $"canary {verdict.Decision}: {reasons}", cancellationToken).ConfigureAwait(false);
                await RecordAsync(adapter, state, PipelineStep.Decide, StepStatus.Succeeded, $"promoted {adapter}@{state.Candidate}: {reasons}", verdict, cancellationToken).ConfigureAwait(false);
                break;
            case CanaryAction.Promote when state.ApprovalId is null:
                var approval = await lifecycle.RequestApprovalAsync(adapter, state.Candidate, ApprovalAction.Promote,
                    JsonSerializer.SerializeToElement(verdict, PipelineDefinition.Json), Actor, reasons, cancellationToken).ConfigureAwait(false);
                await lifecycle.SaveCanaryAsync(adapter, state with { ApprovalId = approval.Id }, cancellationToken).ConfigureAwait(false);
                await RecordAsync(adapter, state, PipelineStep.Decide, StepStatus.Waiting, $"{adapter}@{state.Candidate} won its canary; waiting for approval {approval.Id}: {reasons}", verdict, cancellationToken).ConfigureAwait(false);
                logger.LogInformation("{Adapter}@{Candidate} won its canary; approval {Id} requested", adapter, state.Candidate, approval.Id);
                break;
        }
        return verdict;
    }

    /// <summary>Both arms' cumulative observations since the canary started.</summary>
    internal async Task<(ArmObservations Control, ArmObservations Candidate)> ObserveAsync(string adapter, CanaryState state, CancellationToken cancellationToken)
    {
        var arms = new Dictionary<string, Accumulator> { [state.Control] = new(), [state.Candidate] = new() };
        string? cursor = null;
        do
        {
            var page = await traffic.QueryAsync(new TrafficQuery { Adapter = adapter, Since = state.StartedAt, Limit = TrafficQuery.MaxLimit, Cursor = cursor, IncludeFeedback = true },
                cancellationToken).ConfigureAwait(false);
            foreach (var record in page.Items)
            {
                if (record.Entry.AdapterVersion is not { } version || !arms.TryGetValue(version, out var arm)) continue;
                arm.Add(record);
            }
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        return (arms[state.Control].ToObservations(), arms[state.Candidate].ToObservations());
    }

    private async Task RecordAsync(string adapter, CanaryState state, PipelineStep step, StepStatus status, string message, CanaryVerdict verdict, CancellationToken cancellationToken)
    {
        await history.RecordAsync(new JobRun
        {
            RunId = state.RunId ?? $"canary-{state.StartedAt:yyyyMMddTHHmmss}",
            Adapter = adapter,
            Step = step,
            Status = status,
            StartedAt = _time.GetUtcNow(),
            FinishedAt = status == StepStatus.Waiting ? null : _time.GetUtcNow(),
            Trigger = RunTrigger.CanaryCheck,
            Version = state.Candidate,
            Message = message,
            Details = JsonSerializer.SerializeToElement(verdict, PipelineDefinition.Json),
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Per-arm sums over log records.</summary>
    private sealed class Accumulator
    {
        private long _requests, _errors, _positive, _negative;
        private MetricSummary _task;
        private readonly List<double> _latencies = [];
        private readonly List<double> _ttft = [];

        public void Add(TrafficRecord record)
        {
            _requests++;
            var e = record.Entry;
            if (e.Status >= 500 || e.Error is not null || e.Status == 0) _errors++;
            _latencies.Add(e.LatencyMs);
            if (e.TimeToFirstTokenMs is double ttft) _ttft.Add(ttft);
            if (record.Feedback is { } f)
            {
                if (f.Score > 0) _positive++;
                else if (f.Score < 0) _negative++;
                // Task metric: the user's rating on [0, 1].
                _task = _task.Add((f.Score + 1) / 2);
            }
        }

        public ArmObservations ToObservations() => new()
        {
            Requests = _requests,
            Errors = _errors,
            PositiveFeedback = _positive,
            NegativeFeedback = _negative,
            TaskMetric = _task,
            LatenciesMs = _latencies,
            TimeToFirstTokenMs = _ttft,
        };
    }
}
