using Microsoft.Extensions.Logging.Abstractions;
using TuneGateway.Controller;
using TuneGateway.Controller.Jobs;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Controller.Statistics;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Tests.Engine;
using TuneGateway.Tests.Storage;
using TuneGateway.Training;

namespace TuneGateway.Tests.Controller;

/// <summary>
/// The retraining loop end to end over the embedded lifecycle store, with a fake trainer (it
/// publishes a fixture adapter), a fake completion client (it answers as each version is told
/// to) and a clock the test moves: promotion, gate rejection, the canary's rollback, approval
/// granted or denied. Seconds, not the demo's minutes.
/// </summary>
public sealed class OrchestrationTests : IDisposable
{
    private const string Adapter = "bot";
    private readonly Storage.TempDirectory _root = new();
    private readonly ManualTimeProvider _clock = new(new DateTimeOffset(2026, 12, 1, 9, 0, 0, TimeSpan.Zero));
    private readonly LifecycleStoreSet _store;
    private readonly LifecycleManager _lifecycle;
    private readonly InMemoryTrafficReader _traffic = new(pageSize: 500);
    private readonly FakeTrainer _trainer = new();
    private readonly FakeCompletions _completions = new();
    private readonly PipelineRunner _runner;
    private readonly CanaryMonitor _monitor;
    private int _sequence;

    // The embedded stores; each read below names the one it reads.
    private IAdapterRegistry Registry => _store.Registry;
    private IAliasStore Aliases => _store.Aliases;
    private IApprovalStore Approvals => _store.Approvals;
    private IJobHistory History => _store.Jobs;

    public OrchestrationTests()
    {
        _store = EmbeddedLifecycleStores.Open(Path.Combine(_root.Path, "state"), _clock);
        _lifecycle = new LifecycleManager(_store.Registry, _store.Aliases, _store.Pipelines, _store.Approvals, _store.Canaries, NullLogger<LifecycleManager>.Instance, _clock);
        string artifacts = Path.Combine(_root.Path, "artifacts");
        var options = new ControllerOptions { BaseModelDirectory = Fixtures.LlamaTiny, ArtifactDirectory = artifacts, SemanticDrift = false };
        _runner = new PipelineRunner(options, _lifecycle, _store.Jobs, new ArtifactStore(artifacts), new Curator(_traffic), _trainer, _completions,
            NullLogger<PipelineRunner>.Instance, _clock);
        _monitor = new CanaryMonitor(_lifecycle, _traffic, _store.Jobs, NullLogger<CanaryMonitor>.Instance, _clock);
    }

    public void Dispose()
    {
        _store.Dispose();
        _root.Dispose();
    }

    private static PipelineDefinition Pipeline(PromotionPolicy promotion = PromotionPolicy.Auto) => new()
    {
        Adapter = Adapter,
        Data = new DataRules { MinExamples = 10 },
        Split = new SplitSettings { Validation = 0.1, Holdout = 0.3 },
        Evaluation = new EvaluationSettings { MinImprovement = 0.1 },
        Promotion = promotion,
        Canary = new CanaryPlan
        {
            Settings = new CanarySettings
            {
                CandidateTrafficShare = 0.5, MinSamplesPerArm = 100, MinTaskMetricSamplesPerArm = 100,
                Guardrails = new GuardrailSettings { MaxErrorRate = 0.05 },
            },
        },
    };

    /// <summary>Rated tickets for curation: each prompt's right answer, liked by its user.</summary>
    private void LogRatedTickets(int count)
    {
        var now = _clock.GetUtcNow();
        _traffic.Add(Enumerable.Range(0, count).Select(i => Record(now.AddMinutes(-30), $"ticket {_sequence}-{i}", FakeCompletions.Answer($"ticket {_sequence}-{i}"),
            version: null, score: 1)));
        _sequence++;
    }

    /// <summary>Canary traffic for one arm: <paramref name="positive"/> of <paramref name="count"/> liked, <paramref name="errors"/> failed.</summary>
    private void LogArm(string version, int count, int positive, int errors = 0)
    {
        var at = _clock.GetUtcNow();
        _traffic.Add(Enumerable.Range(0, count).Select(i => Record(at, $"canary {version} {i}", " x", version,
            score: i < positive ? 1 : -1, status: i < errors ? 500 : 200)));
    }

    private TrafficRecord Record(DateTimeOffset at, string prompt, string completion, string? version, double score, int status = 200)
    {
        int n = Interlocked.Increment(ref _sequence) + 1_000_000;
        var entry = new TrafficEntry
        {
            Id = $"cmpl-{n}", Timestamp = at, Adapter = Adapter, AdapterVersion = version, Prompt = prompt, Completion = completion, Status = status, LatencyMs = 5,
        };
        var feedback = new Feedback
        {
            Id = entry.Id, Adapter = Adapter, Rating = score > 0 ? 1 : -1, Scale = RatingScale.Thumbs, Score = score, CreatedAt = at, UpdatedAt = at,
        };
        return new TrafficRecord(new LogPosition(at.ToUnixTimeMilliseconds(), n), entry, feedback);
    }

    private async Task<VersionState?> StateAsync(string version) => (await Registry.GetAsync(Adapter, version))?.State;

    private async Task<IReadOnlyList<(string Model, double Weight)>> RouteAsync() =>
        (await Aliases.GetAsync(Adapter))?.Arms.Select(a => (a.Model, a.Weight)).ToArray() ?? [];

    /// <summary>v1 trained, gated against nothing and promoted: the start of every scenario below.</summary>
    private async Task PromoteFirstVersionAsync()
    {
        LogRatedTickets(20);
        var first = await _runner.RunAsync(Pipeline(), RunTrigger.Manual("test"), CancellationToken.None);
        Assert.Equal((RunOutcome.Promoted, "v1"), (first.Outcome, first.Candidate));
        _completions.Good.Remove("bot@v1");
        _clock.Advance(TimeSpan.FromHours(1));
    }

    [Fact]
    public async Task TheFirstVersionIsPromotedStraightAwayAndEveryStepIsRecorded()
    {
        await PromoteFirstVersionAsync();
        Assert.Equal(VersionState.Production, await StateAsync("v1"));
        Assert.Equal([("bot@v1", 1.0)], await RouteAsync());
        var steps = (await History.ListAsync(Adapter)).OrderBy(r => r.StartedAt).Select(r => (r.Step, r.Status)).ToArray();
        Assert.Equal([(PipelineStep.Curate, StepStatus.Succeeded), (PipelineStep.Train, StepStatus.Succeeded), (PipelineStep.Evaluate, StepStatus.Succeeded),
            (PipelineStep.Canary, StepStatus.Skipped)], steps);
    }

    [Fact]
    public async Task ACandidateNoBetterThanProductionIsRejectedByTheGateAndRoutingIsUntouched()
    {
        await PromoteFirstVersionAsync();
        LogRatedTickets(20);
        _completions.NextIsGood = false;
        var run = await _runner.RunAsync(Pipeline(), RunTrigger.Manual("test"), CancellationToken.None);
        Assert.Equal((RunOutcome.Rejected, "v2"), (run.Outcome, run.Candidate));
        Assert.Equal(VersionState.Rejected, await StateAsync("v2"));
        Assert.Equal([("bot@v1", 1.0)], await RouteAsync());
    }

    [Fact]
    public async Task ABreachedGuardrailRollsTheCanaryBackAndANewRunWaitsForNoCanary()
    {
        await PromoteFirstVersionAsync();
        LogRatedTickets(20);
        var run = await _runner.RunAsync(Pipeline(), RunTrigger.Manual("test"), CancellationToken.None);
        Assert.Equal((RunOutcome.Canary, "v2"), (run.Outcome, run.Candidate));
        Assert.Equal([("bot@v1", 0.5), ("bot@v2", 0.5)], await RouteAsync());

        // While the canary runs, another run is skipped rather than training over it.
        Assert.Equal(RunOutcome.Skipped, (await _runner.RunAsync(Pipeline(), RunTrigger.Schedule(), CancellationToken.None)).Outcome);

        _clock.Advance(TimeSpan.FromMinutes(5));
        LogArm("v1", 60, positive: 30);
        LogArm("v2", 60, positive: 30, errors: 30);
        var verdict = await _monitor.CheckAsync(Pipeline(), CancellationToken.None);
        Assert.Equal(CanaryAction.RollBack, verdict?.Action);
        Assert.Equal(VersionState.RolledBack, await StateAsync("v2"));
        Assert.Equal(VersionState.Production, await StateAsync("v1"));
        Assert.Equal([("bot@v1", 1.0)], await RouteAsync());
        Assert.Null(await _lifecycle.CanaryAsync(Adapter));
    }

    [Fact]
    public async Task ABetterCandidateIsPromotedAutomaticallyWhenThePolicySaysSo()
    {
        await StartWinningCanaryAsync(PromotionPolicy.Auto);
        var verdict = await _monitor.CheckAsync(Pipeline(PromotionPolicy.Auto), CancellationToken.None);
        Assert.Equal(CanaryAction.Promote, verdict?.Action);
        Assert.Equal(VersionState.Production, await StateAsync("v2"));
        Assert.Equal(VersionState.Retired, await StateAsync("v1"));
        Assert.Equal([("bot@v2", 1.0)], await RouteAsync());
    }

    [Fact]
    public async Task TheMonitorJudgesACanaryAtTheCanarysOwnIntervalFromItsStart()
    {
        await StartWinningCanaryAsync(PromotionPolicy.Approval);
        var pipeline = Pipeline(PromotionPolicy.Approval) with { Canary = Pipeline().Canary with { CheckInterval = TimeSpan.FromHours(1) } };
        // StartWinningCanaryAsync let 30 minutes pass since the start: not due yet.
        Assert.Null(await _monitor.CheckIfDueAsync(pipeline, CancellationToken.None));
        _clock.Advance(TimeSpan.FromMinutes(30));
        Assert.NotNull(await _monitor.CheckIfDueAsync(pipeline, CancellationToken.None));
        // Judged just now: the next check waits another interval.
        Assert.Null(await _monitor.CheckIfDueAsync(pipeline, CancellationToken.None));
        Assert.Equal(_clock.GetUtcNow(), (await _lifecycle.CanaryAsync(Adapter))?.CheckedAt);
    }

    [Theory]
    [InlineData(false, 40)]
    [InlineData(true, 20)]
    public async Task SinceProductionCuratesOnlyTrafficLoggedAfterThePromotion(bool sinceProduction, int read)
    {
        await PromoteFirstVersionAsync();
        // PromoteFirstVersionAsync's 20 tickets were logged before the promotion; these 20 after it.
        LogRatedTickets(20);
        var pipeline = Pipeline() with { Data = Pipeline().Data with { SinceProduction = sinceProduction } };
        await _runner.RunAsync(pipeline, RunTrigger.Manual("test"), CancellationToken.None);
        var curate = (await History.ListAsync(Adapter)).Where(r => r.Step == PipelineStep.Curate).MaxBy(r => r.StartedAt)!;
        Assert.Equal(read, curate.Details!.Value.GetProperty("read").GetInt32());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AWinningCanaryWaitsForAnOperatorWhoApprovesOrRejects(bool approve)
    {
        await StartWinningCanaryAsync(PromotionPolicy.Approval);
        var verdict = await _monitor.CheckAsync(Pipeline(PromotionPolicy.Approval), CancellationToken.None);
        Assert.Equal(CanaryAction.Promote, verdict?.Action);
        var pending = Assert.Single(await Approvals.ListAsync(ApprovalStatus.Pending, Adapter));
        Assert.Equal(("v2", ApprovalAction.Promote), (pending.Version, pending.Action));
        // Nothing moved yet, and a second check does not ask twice.
        Assert.Equal([("bot@v1", 0.5), ("bot@v2", 0.5)], await RouteAsync());
        await _monitor.CheckAsync(Pipeline(PromotionPolicy.Approval), CancellationToken.None);
        Assert.Single(await Approvals.ListAsync(ApprovalStatus.Pending, Adapter));

        await _lifecycle.ResolveApprovalAsync(pending.Id, approve, "key:operator", "looks right");
        Assert.Equal(approve ? VersionState.Production : VersionState.RolledBack, await StateAsync("v2"));
        Assert.Equal(approve ? [("bot@v2", 1.0)] : [("bot@v1", 1.0)], await RouteAsync());
        Assert.Empty(await Approvals.ListAsync(ApprovalStatus.Pending, Adapter));
        Assert.Contains(await Registry.GetAuditAsync(Adapter), e => e.Action == "approval.resolve" && e.Actor == "key:operator");
    }

    private PipelineRunJob Job(string instance, TimeSpan? leaseTtl = null) => new(_runner, _store.Pipelines, _store.Leases,
        new ControllerOptions
        {
            BaseModelDirectory = Fixtures.LlamaTiny, ArtifactDirectory = Path.Combine(_root.Path, "artifacts"), Instance = instance,
            RunLeaseTtl = leaseTtl ?? TimeSpan.FromMinutes(2),
        }, NullLogger<PipelineRunJob>.Instance);

    private async Task DefinePipelineAsync() =>
        await _store.Pipelines.UpsertAsync(Adapter, System.Text.Json.JsonSerializer.SerializeToElement(Pipeline(), PipelineDefinition.Json), "test");

    [Fact]
    public async Task TwoControllersRacingForOneFiringRunItOnce()
    {
        await DefinePipelineAsync();
        LogRatedTickets(20);
        var results = await Task.WhenAll(Job("replica-a").RunFiringAsync(Adapter, RunTrigger.Schedule(), "run:bot:1700000000", CancellationToken.None),
            Job("replica-b").RunFiringAsync(Adapter, RunTrigger.Schedule(), "run:bot:1700000000", CancellationToken.None));
        Assert.Single(results, r => r is not null);
        Assert.Equal(["v1"], (await Registry.ListVersionsAsync(Adapter)).Select(v => v.Version));
        Assert.Equal(1, _trainer.Runs);
    }

    [Fact]
    public async Task AReplicaThatLosesItsLeaseMidRunStopsAndRegistersNothing()
    {
        await DefinePipelineAsync();
        LogRatedTickets(20);
        _trainer.BlockUntilCancelled = true;
        var ttl = TimeSpan.FromMilliseconds(400);
        var run = Job("replica-a", ttl).RunFiringAsync(Adapter, RunTrigger.Manual("test"), "run:bot:manual-1", CancellationToken.None);
        await _trainer.Started.Task.WaitAsync(TimeSpan.FromSeconds(30));

        // The store's clock passes the lease's expiry (the replica stalled) and another replica takes it over.
        _clock.Advance(ttl * 3);
        var thief = await _store.Leases.TryAcquireAsync("run:bot", "replica-b", TimeSpan.FromMinutes(2));
        Assert.NotNull(thief);

        // Its next renewal fails: the run is cancelled, nothing is registered, and the new holder keeps the lease.
        Assert.Null(await run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(_trainer.Cancelled);
        Assert.Empty(await Registry.ListVersionsAsync(Adapter));
        Assert.True(await _store.Leases.IsCurrentAsync(thief));
        // The step it was in is closed as cancelled, not left "running" in the job history.
        var steps = await History.ListAsync(Adapter);
        Assert.Equal(StepStatus.Cancelled, Assert.Single(steps, s => s.Step == PipelineStep.Train).Status);
        Assert.DoesNotContain(steps, s => s.Status == StepStatus.Running);
    }

    private async Task StartWinningCanaryAsync(PromotionPolicy policy)
    {
        await PromoteFirstVersionAsync();
        LogRatedTickets(20);
        Assert.Equal(RunOutcome.Canary, (await _runner.RunAsync(Pipeline(policy), RunTrigger.Manual("test"), CancellationToken.None)).Outcome);
        _clock.Advance(TimeSpan.FromMinutes(30));
        LogArm("v1", 400, positive: 80);
        LogArm("v2", 400, positive: 360);
    }

    /// <summary>"Trains" by copying the fixture adapter into the output directory, as a trainer's PEFT output.</summary>
    private sealed class FakeTrainer : ITrainer
    {
        private int _runs;
        public int Runs => _runs;
        /// <summary>Waits for the run's cancellation instead of finishing (a long training run).</summary>
        public bool BlockUntilCancelled { get; set; }
        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public bool Cancelled { get; private set; }

        public async Task<TrainingReport> TrainAsync(TrainingRequest request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _runs);
            Started.TrySetResult();
            if (BlockUntilCancelled)
            {
                try
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    Cancelled = true;
                    throw;
                }
            }
            Directory.CreateDirectory(request.OutputDirectory);
            foreach (string file in ArtifactStore.AdapterFiles)
                File.Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout", file), Path.Combine(request.OutputDirectory, file), overwrite: true);
            return new TrainingReport
            {
                BaseModel = request.BaseModelDirectory, DataSha256 = "fake", TrainExamples = File.ReadLines(request.TrainData).Count(), ValidationExamples = 0,
                SkippedExamples = 0, Config = request.Options, Device = "cpu", TrainableParameters = 0, Steps = [], Validation = [], Stopped = "fake",
            };
        }
    }

    /// <summary>
    /// Answers each ticket right for the versions in <see cref="Good"/> and wrong for the rest; the
    /// next version asked about joins <see cref="Good"/> unless <see cref="NextIsGood"/> is false.
    /// </summary>
    private sealed class FakeCompletions : ICompletionClient
    {
        private readonly HashSet<string> _seen = [];
        public HashSet<string> Good { get; } = [];
        public bool NextIsGood { get; set; } = true;

        public static string Answer(string prompt) => prompt.GetHashCode(StringComparison.Ordinal) % 2 == 0 ? " billing" : " shipping";

        public Task<string> CompleteAsync(string model, string prompt, int maxTokens, CancellationToken cancellationToken)
        {
            lock (_seen)
            {
                if (_seen.Add(model) && NextIsGood) Good.Add(model);
                return Task.FromResult(Good.Contains(model) ? Answer(prompt) : " wrong");
            }
        }
    }
}
