using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Quartz;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Controller.Jobs;

/// <summary>
/// Keeps Quartz's triggers in step with the pipeline store (which survives restarts and is shared
/// by replicas): a cron trigger per scheduled pipeline, in its time zone, and a monitor trigger per
/// pipeline. Changes made through the API on any replica are picked up within
/// <see cref="ControllerOptions.PipelineSyncInterval"/>.
/// <para>
/// Misfire policy: a cron firing missed while the scheduler was running late fires once as soon as
/// possible (FireAndProceed) and the schedule goes on; a firing missed while no replica ran at all is
/// detected at start from the last recorded firing and run once.
/// </para>
/// </summary>
public sealed class ControllerScheduler(ISchedulerFactory schedulers, IPipelineStateStore pipelines, ControllerOptions options, ILogger<ControllerScheduler> logger) : BackgroundService
{
    internal const string LastFireKey = "last_scheduled_fire";
    internal const string RunRequestKey = PipelineRunRequest.StateKey;
    private readonly Dictionary<string, long> _synced = new(StringComparer.Ordinal);
    private IScheduler? _scheduler;

    /// <summary>How often an adapter is monitored: the shorter of the canary and trigger intervals.</summary>
    public static TimeSpan MonitorInterval(PipelineDefinition pipeline) =>
        pipeline.Canary.CheckInterval < pipeline.Triggers.CheckInterval ? pipeline.Canary.CheckInterval : pipeline.Triggers.CheckInterval;

    /// <summary>Runs a pipeline now (manual, drift or feedback trigger), whatever its schedule.</summary>
    public Task RunNowAsync(string adapter, RunTrigger trigger, CancellationToken cancellationToken = default) =>
        RunNowAsync(adapter, trigger, $"run:{adapter}:now:{Guid.NewGuid():N}", cancellationToken);

    private async Task RunNowAsync(string adapter, RunTrigger trigger, string claim, CancellationToken cancellationToken)
    {
        var scheduler = await SchedulerAsync(cancellationToken).ConfigureAwait(false);
        await EnsureJobsAsync(scheduler, adapter, cancellationToken).ConfigureAwait(false);
        await scheduler.TriggerJob(JobKeys.Run(adapter), new JobDataMap
        {
            [JobKeys.Adapter] = adapter,
            [JobKeys.Trigger] = trigger.ToString(),
            [JobKeys.Claim] = claim,
        }, cancellationToken).ConfigureAwait(false);
        logger.LogInformation("{Adapter}: run requested ({Trigger})", adapter, trigger);
    }

    /// <summary>The next scheduled firing of a pipeline, for the API and the dashboard.</summary>
    public async Task<DateTimeOffset?> NextFireAsync(string adapter, CancellationToken cancellationToken = default)
    {
        var scheduler = await SchedulerAsync(cancellationToken).ConfigureAwait(false);
        var trigger = await scheduler.GetTrigger(JobKeys.Cron(adapter), cancellationToken).ConfigureAwait(false);
        return trigger?.NextFireTimeUtc;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        bool first = true;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await SyncAsync(first, stoppingToken).ConfigureAwait(false);
                first = false;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Could not synchronise pipeline schedules; retrying");
            }
            try { await Task.Delay(options.PipelineSyncInterval, stoppingToken).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
        }
    }

    /// <summary>Creates, updates and removes triggers to match the stored pipelines.</summary>
    public async Task SyncAsync(bool startup, CancellationToken cancellationToken)
    {
        var scheduler = await SchedulerAsync(cancellationToken).ConfigureAwait(false);
        var records = await pipelines.ListAsync(cancellationToken).ConfigureAwait(false);
        foreach (var record in records)
        {
            await TakeRunRequestAsync(record.Adapter, cancellationToken).ConfigureAwait(false);
            if (_synced.TryGetValue(record.Adapter, out long revision) && revision == record.Revision) continue;
            PipelineDefinition pipeline;
            try
            {
                pipeline = PipelineDefinition.FromJson(record.Definition);
            }
            catch (ArgumentException ex)
            {
                logger.LogError("{Adapter}: stored pipeline is invalid, not scheduled: {Message}", record.Adapter, ex.Message);
                _synced[record.Adapter] = record.Revision;
                continue;
            }
            await ScheduleAsync(scheduler, pipeline, cancellationToken).ConfigureAwait(false);
            if (startup) await CatchUpMissedFiringAsync(pipeline, cancellationToken).ConfigureAwait(false);
            _synced[record.Adapter] = record.Revision;
        }
        foreach (string gone in _synced.Keys.Except(records.Select(r => r.Adapter)).ToArray())
        {
            await scheduler.DeleteJob(JobKeys.Run(gone), cancellationToken).ConfigureAwait(false);
            await scheduler.DeleteJob(JobKeys.Monitor(gone), cancellationToken).ConfigureAwait(false);
            _synced.Remove(gone);
            logger.LogInformation("{Adapter}: pipeline removed; its schedule is gone", gone);
        }
    }

    private async Task TakeRunRequestAsync(string adapter, CancellationToken cancellationToken)
    {
        var stored = await pipelines.GetStateAsync(adapter, RunRequestKey, cancellationToken).ConfigureAwait(false);
        if (stored is not { ValueKind: JsonValueKind.Object } value || value.Deserialize<PipelineRunRequest>() is not { } request) return;
        // Every replica may see the request; the claim key makes exactly one of them run it.
        await RunNowAsync(adapter, RunTrigger.Manual(request.Actor), $"run:{adapter}:request:{request.Id}", cancellationToken).ConfigureAwait(false);
        await pipelines.SetStateAsync(adapter, RunRequestKey, JsonSerializer.SerializeToElement<object?>(null), cancellationToken).ConfigureAwait(false);
    }

    private async Task ScheduleAsync(IScheduler scheduler, PipelineDefinition pipeline, CancellationToken cancellationToken)
    {
        string adapter = pipeline.Adapter;
        await EnsureJobsAsync(scheduler, adapter, cancellationToken).ConfigureAwait(false);

        await scheduler.UnscheduleJob(JobKeys.Cron(adapter), cancellationToken).ConfigureAwait(false);
        if (pipeline.Schedule.Cron is { } cron)
        {
            var zone = TimeZoneInfo.FindSystemTimeZoneById(pipeline.Schedule.TimeZone);
            var trigger = TriggerBuilder.Create()
                .WithIdentity(JobKeys.Cron(adapter))
                .ForJob(JobKeys.Run(adapter))
                .UsingJobData(JobKeys.Adapter, adapter)
                .UsingJobData(JobKeys.Trigger, RunTrigger.Schedule($"{cron} {pipeline.Schedule.TimeZone}").ToString())
                .WithSchedule(CronScheduleBuilder.Create(cron).InTimeZone(zone).WithMisfireInstruction(CronTriggerMisfireInstruction.FireAndProceed))
                .Build();
            await scheduler.ScheduleJob(trigger, cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        await scheduler.UnscheduleJob(JobKeys.MonitorTrigger(adapter), cancellationToken).ConfigureAwait(false);
        var monitor = TriggerBuilder.Create()
            .WithIdentity(JobKeys.MonitorTrigger(adapter))
            .ForJob(JobKeys.Monitor(adapter))
            .UsingJobData(JobKeys.Adapter, adapter)
            .StartNow()
            .WithSimpleSchedule(x => x.WithInterval(MonitorInterval(pipeline)).RepeatForever())
            .Build();
        await scheduler.ScheduleJob(monitor, cancellationToken: cancellationToken).ConfigureAwait(false);
        logger.LogInformation("{Adapter}: scheduled ({Cron}), monitored every {Interval}", adapter, pipeline.Schedule.Cron ?? "no cron", MonitorInterval(pipeline));
    }

    private static async Task EnsureJobsAsync(IScheduler scheduler, string adapter, CancellationToken cancellationToken)
    {
        if (!await scheduler.Exists(JobKeys.Run(adapter), cancellationToken).ConfigureAwait(false))
        {
            var run = JobBuilder.Create<PipelineRunJob>().WithIdentity(JobKeys.Run(adapter)).UsingJobData(JobKeys.Adapter, adapter).StoreDurably().Build();
            await scheduler.AddJob(run, new AddJobOptions { Replace = true }, cancellationToken).ConfigureAwait(false);
        }
        if (!await scheduler.Exists(JobKeys.Monitor(adapter), cancellationToken).ConfigureAwait(false))
        {
            var monitor = JobBuilder.Create<MonitorJob>().WithIdentity(JobKeys.Monitor(adapter)).UsingJobData(JobKeys.Adapter, adapter).StoreDurably().Build();
            await scheduler.AddJob(monitor, new AddJobOptions { Replace = true }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Runs once a firing that fell while no replica was up (the schedule survives restarts in the pipeline store).</summary>
    private async Task CatchUpMissedFiringAsync(PipelineDefinition pipeline, CancellationToken cancellationToken)
    {
        if (pipeline.Schedule.Cron is not { } cron) return;
        var last = await pipelines.GetStateAsync(pipeline.Adapter, LastFireKey, cancellationToken).ConfigureAwait(false);
        if (last is not { ValueKind: JsonValueKind.String } value) return;
        var expression = CronExpression.Parse(cron).WithTimeZone(TimeZoneInfo.FindSystemTimeZoneById(pipeline.Schedule.TimeZone));
        var previous = expression.GetPreviousValidTimeBefore(DateTimeOffset.UtcNow);
        if (previous is { } due && due > value.GetDateTimeOffset())
            await RunNowAsync(pipeline.Adapter, RunTrigger.Misfire(due), cancellationToken).ConfigureAwait(false);
    }

    private async Task<IScheduler> SchedulerAsync(CancellationToken cancellationToken) =>
        _scheduler ??= await schedulers.GetScheduler(cancellationToken).ConfigureAwait(false);
}
