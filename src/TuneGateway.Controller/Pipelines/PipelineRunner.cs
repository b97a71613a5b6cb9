using System.Text.Json;
using Microsoft.Extensions.Logging;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Training;

namespace TuneGateway.Controller.Pipelines;

/// <summary>Where the controller finds the base model, artifacts, and what it may use.</summary>
public sealed record ControllerOptions
{
    /// <summary>The base model every adapter of this deployment is trained on.</summary>
    public required string BaseModelDirectory { get; init; }
    /// <summary>Shared artifact volume: adapters under {root}/{adapter}/{version}, datasets under {root}/{adapter}/datasets/{run}.</summary>
    public required string ArtifactDirectory { get; init; }
    /// <summary>Device for training runs (auto, cpu, cuda, cuda:N).</summary>
    public string TrainingDevice { get; init; } = "auto";
    /// <summary>Concurrent evaluation requests.</summary>
    public int EvaluationParallelism { get; init; } = 4;
    /// <summary>Identifies this replica in leases and audit events.</summary>
    public string Instance { get; init; } = $"{Environment.MachineName}:{Environment.ProcessId}";
    /// <summary>Load a CPU copy of the base model to embed prompts for semantic drift (MMD). Off for large bases without a GPU.</summary>
    public bool SemanticDrift { get; init; } = true;
    /// <summary>
    /// How long a replica's hold on an adapter's run lasts without renewal; renewed every quarter
    /// of it (<see cref="RunLeaseRenewal"/>), so a replica that dies frees the adapter within this.
    /// </summary>
    public TimeSpan RunLeaseTtl { get; init; } = TimeSpan.FromMinutes(2);
    /// <summary>How long a claimed firing is remembered, so no other replica runs it again.</summary>
    public TimeSpan FiringClaimRetention { get; init; } = TimeSpan.FromDays(1);
    /// <summary>How often Quartz's triggers are brought in line with the pipeline store (edits made on other replicas, run requests).</summary>
    public TimeSpan PipelineSyncInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>How long one evaluation request (a candidate's or production's answer) may take through the gateway.</summary>
    public TimeSpan EvaluationTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>A quarter of <see cref="RunLeaseTtl"/>: three renewals may fail in a row before the lease is lost.</summary>
    public TimeSpan RunLeaseRenewal => RunLeaseTtl / 4;
}

/// <summary>How a pipeline run ended.</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(SnakeCaseEnumConverter<RunOutcome>))]
public enum RunOutcome
{
    /// <summary>Nothing to do: too little data, or a canary still running.</summary>
    Skipped,
    /// <summary>A step failed (curation, training, evaluation); production untouched.</summary>
    Failed,
    /// <summary>The offline gate refused the candidate.</summary>
    Rejected,
    /// <summary>The first version of an adapter, promoted directly.</summary>
    Promoted,
    /// <summary>The candidate passed the gate and is in canary.</summary>
    Canary,
}

/// <summary>The outcome of one pipeline run.</summary>
public sealed record PipelineRunResult(string RunId, RunOutcome Outcome, string? Candidate, string Message);

/// <summary>
/// One run of a pipeline: curate → train → evaluate (offline gate) → start the canary. Every
/// step is recorded in the job history; a failed step marks the candidate (if any) rejected with
/// the reason and leaves production untouched. The canary itself is then watched by
/// <see cref="CanaryMonitor"/>.
/// </summary>
public sealed class PipelineRunner(
    ControllerOptions options,
    LifecycleManager lifecycle,
    IJobHistory history,
    ArtifactStore artifacts,
    Curator curator,
    ITrainer trainer,
    ICompletionClient completions,
    ILogger<PipelineRunner> logger,
    TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private const string Actor = "pipeline";

    public async Task<PipelineRunResult> RunAsync(PipelineDefinition pipeline, RunTrigger trigger, CancellationToken cancellationToken)
    {
        var run = new RunProgress($"{_time.GetUtcNow():yyyyMMddTHHmmss}-{Guid.NewGuid().ToString("N")[..6]}", pipeline.Adapter, trigger);
        try
        {
            return await RunStepsAsync(pipeline, run, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await CancelAsync(run).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// A run stopped midway (shutdown, lost lease) closes the step it was in as cancelled instead of
    /// leaving it "running" forever, and rejects a candidate it registered but did not get to judge.
    /// Uses no cancellation token: the run's own is cancelled already.
    /// </summary>
    private async Task CancelAsync(RunProgress run)
    {
        const string why = "cancelled: the controller stopped or lost the run's lease";
        if (run.Current is { } step) await EndAsync(run, step, StepStatus.Cancelled, why, null, CancellationToken.None).ConfigureAwait(false);
        if (run.Candidate is not { } candidate) return;
        try
        {
            await lifecycle.RejectAsync(run.Adapter, candidate, Actor, why, CancellationToken.None).ConfigureAwait(false);
        }
        catch (StateConflictException ex)
        {
            // The canary had started (the run's last write): the canary monitor owns the candidate now.
            logger.LogInformation("{Adapter}@{Version} left as is after the cancelled run: {Message}", run.Adapter, candidate, ex.Message);
        }
    }

    private async Task<PipelineRunResult> RunStepsAsync(PipelineDefinition pipeline, RunProgress run, CancellationToken cancellationToken)
    {
        string adapter = run.Adapter, runId = run.RunId;

        if (await lifecycle.CanaryAsync(adapter, cancellationToken).ConfigureAwait(false) is { } canary)
            return await SkipAsync(run, $"{canary.Candidate} is still in canary; a new candidate waits for its decision.", cancellationToken).ConfigureAwait(false);
        var production = await lifecycle.ProductionAsync(adapter, cancellationToken).ConfigureAwait(false);

        // 1. Curate.
        var curateStep = await BeginAsync(run, PipelineStep.Curate, null, cancellationToken).ConfigureAwait(false);
        CuratedDataset data;
        string datasetDirectory = Path.Combine(options.ArtifactDirectory, adapter, "datasets", runId);
        try
        {
            var parent = production?.DatasetId is { } parentDataset
                ? Curator.ReadJsonLines(Path.Combine(options.ArtifactDirectory, adapter, "datasets", parentDataset, "train.jsonl"))
                    .Concat(Curator.ReadJsonLines(Path.Combine(options.ArtifactDirectory, adapter, "datasets", parentDataset, "validation.jsonl"))).ToArray()
                : [];
            // A production record's last change is its promotion (a version is not edited once it serves).
            data = await curator.CurateAsync(pipeline, parent, _time.GetUtcNow(), cancellationToken, productionSince: production?.UpdatedAt).ConfigureAwait(false);
            if (data.Count < pipeline.Data.MinExamples || data.Train.Count == 0 || data.Holdout.Count == 0)
            {
                await EndAsync(run, curateStep, StepStatus.Skipped, $"{data.Count} examples curated ({data.Train.Count} train, {data.Holdout.Count} hold-out); the pipeline needs {pipeline.Data.MinExamples}.",
                    data.Stats, cancellationToken).ConfigureAwait(false);
                return new PipelineRunResult(runId, RunOutcome.Skipped, null, "not enough data");
            }
            Curator.WriteJsonLines(Path.Combine(datasetDirectory, "train.jsonl"), data.Train);
            Curator.WriteJsonLines(Path.Combine(datasetDirectory, "validation.jsonl"), data.Validation);
            Curator.WriteJsonLines(Path.Combine(datasetDirectory, "holdout.jsonl"), data.Holdout);
            await EndAsync(run, curateStep, StepStatus.Succeeded, $"{data.Train.Count} train, {data.Validation.Count} validation, {data.Holdout.Count} hold-out examples", data.Stats, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await EndAsync(run, curateStep, StepStatus.Failed, ex.Message, null, cancellationToken).ConfigureAwait(false);
            return new PipelineRunResult(runId, RunOutcome.Failed, null, $"curation failed: {ex.Message}");
        }

        // 2. Train (a separate process) and register the candidate.
        var trainStep = await BeginAsync(run, PipelineStep.Train, null, cancellationToken).ConfigureAwait(false);
        RegisteredVersion candidate;
        string workDirectory = Path.Combine(datasetDirectory, "training");
        try
        {
            var report = await trainer.TrainAsync(new TrainingRequest(options.BaseModelDirectory, Path.Combine(datasetDirectory, "train.jsonl"),
                data.Validation.Count > 0 ? Path.Combine(datasetDirectory, "validation.jsonl") : null, workDirectory,
                pipeline.Training with { ValidationSplit = data.Validation.Count > 0 ? 0 : pipeline.Training.ValidationSplit },
                options.TrainingDevice), cancellationToken).ConfigureAwait(false);

            string version = await lifecycle.AllocateVersionAsync(adapter, cancellationToken).ConfigureAwait(false);
            var published = await artifacts.PublishAsync(workDirectory, adapter, version, cancellationToken).ConfigureAwait(false);
            candidate = await lifecycle.RegisterCandidateAsync(new RegisteredVersion
            {
                Adapter = adapter,
                Version = version,
                ArtifactPath = published.Path,
                Sha256 = published.Sha256,
                ParentVersion = production?.Version,
                DatasetId = runId,
                DatasetSha256 = report.DataSha256,
                BaseModel = options.BaseModelDirectory,
                TrainingConfig = JsonSerializer.SerializeToElement(pipeline.Training, PipelineDefinition.Json),
                TrainingReport = JsonSerializer.SerializeToElement(new
                {
                    report.TrainExamples, report.ValidationExamples, report.BestEpoch, report.BestValidationLoss, report.EpochsRun, report.Stopped, report.Seconds,
                    FinalLoss = report.Steps.LastOrDefault()?.Loss,
                }, PipelineDefinition.Json),
            }, Actor, $"trained by run {runId} ({run.Trigger})", cancellationToken).ConfigureAwait(false);
            run.Candidate = candidate.Version;
            await EndAsync(run, trainStep, StepStatus.Succeeded, $"{candidate.ModelName}: {report.Stopped}, best validation loss {report.BestValidationLoss:F4}", null, cancellationToken, candidate.Version).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await EndAsync(run, trainStep, StepStatus.Failed, ex.Message, null, cancellationToken).ConfigureAwait(false);
            return new PipelineRunResult(runId, RunOutcome.Failed, null, $"training failed: {ex.Message}");
        }

        // 3. Offline gate.
        var evaluateStep = await BeginAsync(run, PipelineStep.Evaluate, candidate.Version, cancellationToken).ConfigureAwait(false);
        GateResult gate;
        try
        {
            var golden = pipeline.Evaluation.GoldenSet is { } goldenPath ? Curator.ReadJsonLines(goldenPath) : [];
            gate = await Evaluator.GateAsync(completions, candidate.ModelName, production?.ModelName, data.Holdout, golden, pipeline.Evaluation,
                options.EvaluationParallelism, cancellationToken).ConfigureAwait(false);
            await lifecycle.RecordEvaluationAsync(adapter, candidate.Version, JsonSerializer.SerializeToElement(gate, PipelineDefinition.Json), Actor, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await EndAsync(run, evaluateStep, StepStatus.Failed, ex.Message, null, cancellationToken, candidate.Version).ConfigureAwait(false);
            await lifecycle.RejectAsync(adapter, candidate.Version, Actor, $"evaluation failed: {ex.Message}", cancellationToken).ConfigureAwait(false);
            return new PipelineRunResult(runId, RunOutcome.Failed, candidate.Version, $"evaluation failed: {ex.Message}");
        }
        if (!gate.Passed)
        {
            await EndAsync(run, evaluateStep, StepStatus.Failed, $"offline gate: {gate.Reason}", gate, cancellationToken, candidate.Version).ConfigureAwait(false);
            await lifecycle.RejectAsync(adapter, candidate.Version, Actor, $"offline gate: {gate.Reason}", cancellationToken).ConfigureAwait(false);
            logger.LogInformation("{Adapter}@{Version} rejected by the offline gate: {Reason}", adapter, candidate.Version, gate.Reason);
            return new PipelineRunResult(runId, RunOutcome.Rejected, candidate.Version, gate.Reason);
        }
        await EndAsync(run, evaluateStep, StepStatus.Succeeded, gate.Reason, gate, cancellationToken, candidate.Version).ConfigureAwait(false);

        // 4. Canary (or straight to production when nothing serves yet).
        var canaryStep = await BeginAsync(run, PipelineStep.Canary, candidate.Version, cancellationToken).ConfigureAwait(false);
        if (production is null)
        {
            await lifecycle.PromoteAsync(adapter, candidate.Version, Actor, $"first version; offline gate: {gate.Reason}", cancellationToken).ConfigureAwait(false);
            run.Candidate = null;
            await EndAsync(run, canaryStep, StepStatus.Skipped, "no production version to compare against: promoted directly", null, cancellationToken, candidate.Version).ConfigureAwait(false);
            return new PipelineRunResult(runId, RunOutcome.Promoted, candidate.Version, "first version promoted");
        }
        await lifecycle.StartCanaryAsync(adapter, candidate.Version, pipeline.Canary.Settings.CandidateTrafficShare, runId, Actor, cancellationToken).ConfigureAwait(false);
        run.Candidate = null;
        await EndAsync(run, canaryStep, StepStatus.Running, $"{pipeline.Canary.Settings.CandidateTrafficShare:P0} of traffic to {candidate.ModelName}", null, cancellationToken, candidate.Version).ConfigureAwait(false);
        return new PipelineRunResult(runId, RunOutcome.Canary, candidate.Version, gate.Reason);
    }

    private async Task<PipelineRunResult> SkipAsync(RunProgress run, string message, CancellationToken cancellationToken)
    {
        var step = await BeginAsync(run, PipelineStep.Curate, null, cancellationToken).ConfigureAwait(false);
        await EndAsync(run, step, StepStatus.Skipped, message, null, cancellationToken).ConfigureAwait(false);
        return new PipelineRunResult(run.RunId, RunOutcome.Skipped, null, message);
    }

    private async Task<JobRun> BeginAsync(RunProgress progress, PipelineStep step, string? version, CancellationToken cancellationToken)
    {
        var run = new JobRun
        {
            RunId = progress.RunId, Adapter = progress.Adapter, Step = step, Status = StepStatus.Running, StartedAt = _time.GetUtcNow(), Trigger = progress.Trigger, Version = version,
        };
        await history.RecordAsync(run, cancellationToken).ConfigureAwait(false);
        progress.Current = run;
        logger.LogInformation("{Adapter} run {RunId}: {Step} started ({Trigger})", run.Adapter, run.RunId, step, progress.Trigger);
        return run;
    }

    private async Task EndAsync(RunProgress progress, JobRun run, StepStatus status, string message, object? details, CancellationToken cancellationToken, string? version = null)
    {
        // Only a step still open can be cancelled; the canary step stays "running" on purpose (its monitor ends it).
        progress.Current = null;
        await history.RecordAsync(run with
        {
            Status = status,
            FinishedAt = status == StepStatus.Running ? null : _time.GetUtcNow(),
            Message = message,
            Version = version ?? run.Version,
            Details = details is null ? null : JsonSerializer.SerializeToElement(details, details.GetType(), PipelineDefinition.Json),
        }, CancellationToken.None).ConfigureAwait(false);
        logger.LogInformation("{Adapter} run {RunId}: {Step} {Status}: {Message}", run.Adapter, run.RunId, run.Step, status, message);
    }

    /// <summary>Where a run is: the step open now and the candidate it registered, for <see cref="CancelAsync"/>.</summary>
    private sealed class RunProgress(string runId, string adapter, RunTrigger trigger)
    {
        public string RunId { get; } = runId;
        public string Adapter { get; } = adapter;
        public RunTrigger Trigger { get; } = trigger;
        public JobRun? Current { get; set; }
        public string? Candidate { get; set; }
    }
}
