using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Quartz;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Controller.Jobs;

/// <summary>Keys and job data shared by the controller's jobs.</summary>
internal static class JobKeys
{
    public const string Group = "tunegw";
    public const string Adapter = "adapter";
    public const string Trigger = "trigger";
    public const string Claim = "claim";

    public static JobKey Run(string adapter) => new($"run.{adapter}", Group);
    public static JobKey Monitor(string adapter) => new($"monitor.{adapter}", Group);
    public static TriggerKey Cron(string adapter) => new($"cron.{adapter}", Group);
    public static TriggerKey MonitorTrigger(string adapter) => new($"monitor.{adapter}", Group);
}

/// <summary>
/// One pipeline run per firing. Quartz runs at most one per adapter in this process
/// (DisallowConcurrentExecution); across replicas a firing is claimed once in the lease store, and
/// the run holds a renewed per-adapter lease whose loss cancels it (fencing).
/// </summary>
[DisallowConcurrentExecution]
public sealed class PipelineRunJob(PipelineRunner runner, IPipelineStateStore pipelines, ILeaseManager leases, ControllerOptions options, ILogger<PipelineRunJob> logger,
    TimeProvider? time = null) : IJob
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        var data = context.MergedJobDataMap;
        string adapter = data.GetString(JobKeys.Adapter)!;
        var trigger = data.GetString(JobKeys.Trigger) is { } text ? RunTrigger.Parse(text) : RunTrigger.Schedule();
        string claim = data.GetString(JobKeys.Claim) ?? $"run:{adapter}:{context.ScheduledFireTimeUtc?.ToUnixTimeSeconds()}";
        await RunFiringAsync(adapter, trigger, claim, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// One firing: claimed once across replicas, skipped when paused (unless manual), run under the
    /// adapter's lease. Null when this replica did not run it (claimed elsewhere, paused, leased elsewhere).
    /// </summary>
    public async Task<PipelineRunResult?> RunFiringAsync(string adapter, RunTrigger trigger, string claim, CancellationToken cancellationToken)
    {
        if (!await leases.TryClaimOnceAsync(claim, options.Instance, options.FiringClaimRetention, cancellationToken).ConfigureAwait(false))
        {
            logger.LogDebug("{Adapter}: firing {Claim} already claimed by another replica", adapter, claim);
            return null;
        }

        var record = await pipelines.GetAsync(adapter, cancellationToken).ConfigureAwait(false);
        if (record is null) return null;
        bool manual = trigger.Kind == TriggerKind.Manual;
        if (record.Paused && !manual)
        {
            logger.LogInformation("{Adapter}: pipeline paused; {Trigger} run skipped", adapter, trigger);
            return null;
        }
        if (!manual) await pipelines.SetStateAsync(adapter, ControllerScheduler.LastFireKey, JsonSerializer.SerializeToElement(_time.GetUtcNow()), cancellationToken).ConfigureAwait(false);

        var lease = await leases.TryAcquireAsync($"run:{adapter}", options.Instance, options.RunLeaseTtl, cancellationToken).ConfigureAwait(false);
        if (lease is null)
        {
            logger.LogInformation("{Adapter}: another replica is running this pipeline; {Trigger} run skipped", adapter, trigger);
            return null;
        }
        using var fenced = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var renewal = RenewAsync(lease, fenced);
        var clock = Stopwatch.StartNew();
        bool failed = false;
        PipelineRunResult? result = null;
        using var activity = ControllerTelemetry.Source.StartActivity("pipeline.run");
        activity?.SetTag("tunegw.adapter", adapter);
        activity?.SetTag("tunegw.trigger", LifecycleJson.Name(trigger.Kind));
        try
        {
            result = await runner.RunAsync(PipelineDefinition.FromJson(record.Definition), trigger, fenced.Token).ConfigureAwait(false);
            failed = result.Outcome == RunOutcome.Failed;
            activity?.SetTag("tunegw.outcome", LifecycleJson.Name(result.Outcome));
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            failed = true;
            logger.LogError(ex, "{Adapter}: pipeline run failed", adapter);
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
        }
        finally
        {
            await fenced.CancelAsync().ConfigureAwait(false);
            await renewal.ConfigureAwait(false);
            await leases.ReleaseAsync(lease, CancellationToken.None).ConfigureAwait(false);
            ControllerTelemetry.RecordJob("pipeline.run", adapter, clock.Elapsed, failed);
        }
        return result;
    }

    private async Task RenewAsync(LeaseGrant lease, CancellationTokenSource fence)
    {
        try
        {
            while (!fence.IsCancellationRequested)
            {
                await Task.Delay(options.RunLeaseRenewal, _time, fence.Token).ConfigureAwait(false);
                if (!await leases.RenewAsync(lease, options.RunLeaseTtl, fence.Token).ConfigureAwait(false))
                {
                    logger.LogWarning("{Lease}: lease lost; cancelling the run", lease.Name);
                    await fence.CancelAsync().ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) { }
    }
}

/// <summary>
/// Watches one adapter: the running canary (every check), drift and the feedback-count trigger
/// (every trigger check interval). At most one replica does it per interval (a lease).
/// Runs even while the pipeline is paused, so a canary's guardrails stay armed.
/// </summary>
[DisallowConcurrentExecution]
public sealed class MonitorJob(CanaryMonitor canary, DriftMonitor drift, IPipelineStateStore pipelines, ITrafficReader traffic, ILeaseManager leases,
    ControllerScheduler scheduler, ControllerOptions options, ILogger<MonitorJob> logger) : IJob
{
    private const string FeedbackCursorKey = "feedback_cursor";
    private const string LastTriggerCheckKey = "last_trigger_check";

    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        string adapter = context.MergedJobDataMap.GetString(JobKeys.Adapter)!;
        var record = await pipelines.GetAsync(adapter, cancellationToken).ConfigureAwait(false);
        if (record is null) return;
        var pipeline = PipelineDefinition.FromJson(record.Definition);
        var interval = ControllerScheduler.MonitorInterval(pipeline);
        var lease = await leases.TryAcquireAsync($"monitor:{adapter}", options.Instance, interval * 0.9, cancellationToken).ConfigureAwait(false);
        if (lease is null) return; // another replica checked within this interval

        var clock = Stopwatch.StartNew();
        bool failed = false;
        try
        {
            await canary.CheckIfDueAsync(pipeline, cancellationToken).ConfigureAwait(false);
            if (!record.Paused && await DueAsync(adapter, pipeline.Triggers.CheckInterval, cancellationToken).ConfigureAwait(false))
                await CheckTriggersAsync(pipeline, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            failed = true;
            logger.LogError(ex, "{Adapter}: monitoring failed", adapter);
        }
        finally
        {
            ControllerTelemetry.RecordJob("monitor", adapter, clock.Elapsed, failed);
        }
    }

    private async Task<bool> DueAsync(string adapter, TimeSpan interval, CancellationToken cancellationToken)
    {
        var last = await pipelines.GetStateAsync(adapter, LastTriggerCheckKey, cancellationToken).ConfigureAwait(false);
        var now = DateTimeOffset.UtcNow;
        if (last is { ValueKind: JsonValueKind.String } l && now - l.GetDateTimeOffset() < interval) return false;
        await pipelines.SetStateAsync(adapter, LastTriggerCheckKey, JsonSerializer.SerializeToElement(now), cancellationToken).ConfigureAwait(false);
        return true;
    }

    private async Task CheckTriggersAsync(PipelineDefinition pipeline, CancellationToken cancellationToken)
    {
        string adapter = pipeline.Adapter;
        if (pipeline.Triggers.OnDrift && await drift.CheckAsync(pipeline, cancellationToken).ConfigureAwait(false) is { Report.DriftDetected: true } check)
        {
            await scheduler.RunNowAsync(adapter, RunTrigger.Drift(check.Report.Alarms), cancellationToken).ConfigureAwait(false);
            return;
        }
        if (pipeline.Triggers.FeedbackCount > 0)
        {
            var cursor = await pipelines.GetStateAsync(adapter, FeedbackCursorKey, cancellationToken).ConfigureAwait(false);
            var count = await traffic.CountFeedbackSinceAsync(adapter, cursor is { ValueKind: JsonValueKind.String } c ? c.GetString() : null, cancellationToken).ConfigureAwait(false);
            if (count.Count >= pipeline.Triggers.FeedbackCount)
            {
                await pipelines.SetStateAsync(adapter, FeedbackCursorKey, JsonSerializer.SerializeToElement(count.Cursor), cancellationToken).ConfigureAwait(false);
                await scheduler.RunNowAsync(adapter, RunTrigger.Feedback(count.Count), cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
