using System.Text.Json;
using StackExchange.Redis;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Storage.Lifecycle.Embedded;
using TuneGateway.Storage.Lifecycle.Redis;

namespace TuneGateway.Tests.Storage.Lifecycle;

/// <summary>
/// One contract for both lifecycle stores (Redis and embedded): round trips with every field,
/// atomic version allocation and transitions with their audit events, alias revisions and change
/// notifications, resolve-once approvals, leases with fencing tokens, claims, and durability.
/// </summary>
public abstract class LifecycleStoreContractTests : IAsyncLifetime
{
    private protected abstract Task<LifecycleStoreSet> OpenAsync();
    /// <summary>A second, independent instance over the same data (another replica, or a restart).</summary>
    private protected abstract Task<LifecycleStoreSet> ReopenAsync();
    /// <summary>Whether two instances can be open at the same time (Redis: yes; embedded: one process).</summary>
    protected abstract bool SupportsConcurrentInstances { get; }

    private LifecycleStoreSet _stores = null!;

    public async Task InitializeAsync() => _stores = await OpenAsync();

    public virtual Task DisposeAsync() => Task.CompletedTask;

    private static RegisteredVersion Version(string adapter, string version) => new()
    {
        Adapter = adapter,
        Version = version,
        ArtifactPath = $"/artifacts/{adapter}/{version}",
        Sha256 = "ab12",
        ParentVersion = "v0",
        DatasetId = "run-1",
        DatasetSha256 = "cd34",
        BaseModel = "/models/base",
        BaseModelSha256 = "ef56",
        TrainingConfig = JsonDocument.Parse("""{"rank": 8, "targets": [], "lr": 0.0002}""").RootElement,
        TrainingReport = JsonDocument.Parse("""{"steps": [], "best_epoch": 3, "loss": 0.123456789012345}""").RootElement,
    };

    [Fact]
    public async Task VersionsRoundTripWithLineageAndAnAuditTrail()
    {
        var registry = _stores.Registry;
        string adapter = $"bot-{Guid.NewGuid():N}"[..12];
        var registered = await registry.RegisterAsync(Version(adapter, "v1"), "alice", "first");
        var read = await registry.GetAsync(adapter, "v1");
        Assert.NotNull(read);
        Assert.Equal(VersionState.Candidate, read.State);
        Assert.Equal("run-1", read.DatasetId);
        Assert.Equal("v0", read.ParentVersion);
        Assert.Equal(JsonValueKind.Array, read.TrainingConfig!.Value.GetProperty("targets").ValueKind);
        Assert.Equal(0.123456789012345, read.TrainingReport!.Value.GetProperty("loss").GetDouble());
        Assert.Equal($"{adapter}@v1", read.ModelName);
        await Assert.ThrowsAsync<StateConflictException>(() => registry.RegisterAsync(Version(adapter, "v1"), "alice", "again"));

        var moved = await registry.TransitionAsync(adapter, "v1", VersionState.Canary, "bob", "canary at 10%", [VersionState.Candidate]);
        Assert.Equal(VersionState.Canary, moved.State);
        Assert.Equal("canary at 10%", moved.StateReason);
        var evaluated = await registry.SetEvaluationAsync(adapter, "v1", JsonDocument.Parse("""{"accuracy": 0.9, "reasons": []}""").RootElement, "pipeline");
        Assert.Equal(0.9, evaluated.Evaluation!.Value.GetProperty("accuracy").GetDouble());
        Assert.Equal(VersionState.Canary, evaluated.State);

        var audit = await registry.GetAuditAsync(adapter);
        Assert.Equal(["register", "transition", "evaluation"], audit.Select(a => a.Action));
        Assert.Equal("candidate", audit[1].From);
        Assert.Equal("canary", audit[1].To);
        Assert.Equal("bob", audit[1].Actor);
        Assert.True(audit.Zip(audit.Skip(1)).All(p => p.Second.Sequence > p.First.Sequence));
        Assert.Contains(adapter, await registry.ListAdaptersAsync());
        var after = await registry.GetAuditAsync(adapter, afterSequence: audit[0].Sequence);
        Assert.Equal(2, after.Count);
    }

    [Fact]
    public async Task VersionAllocationIsUniqueUnderConcurrency()
    {
        string adapter = $"alloc-{Guid.NewGuid():N}"[..12];
        var versions = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Task.Run(() => _stores.Registry.AllocateVersionAsync(adapter))));
        Assert.Equal(50, versions.Distinct().Count());
        Assert.Contains("v1", versions);
        Assert.Contains("v50", versions);
    }

    [Fact]
    public async Task ConcurrentTransitionsFromOneStateHaveOneWinnerAndOneAuditEvent()
    {
        string adapter = $"cas-{Guid.NewGuid():N}"[..12];
        await _stores.Registry.RegisterAsync(Version(adapter, "v1"), "alice", "r");
        var attempts = Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
        {
            try
            {
                await _stores.Registry.TransitionAsync(adapter, "v1", i % 2 == 0 ? VersionState.Canary : VersionState.Rejected, $"actor{i}", "race", [VersionState.Candidate]);
                return true;
            }
            catch (StateConflictException)
            {
                return false;
            }
        })).ToArray();
        var results = await Task.WhenAll(attempts);
        Assert.Equal(1, results.Count(r => r));
        var audit = await _stores.Registry.GetAuditAsync(adapter);
        Assert.Single(audit, a => a.Action == "transition");
        await Assert.ThrowsAsync<KeyNotFoundException>(() => _stores.Registry.TransitionAsync(adapter, "v9", VersionState.Canary, "x", "y"));
    }

    [Fact]
    public async Task AliasesChangeByRevisionAndWatchersSeeChangesFromAnotherInstance()
    {
        string alias = $"al-{Guid.NewGuid():N}"[..12];
        var first = await _stores.Aliases.SetAsync(alias, [new AliasArm($"{alias}@v1", 1.0, "production")], "alice");
        Assert.Equal(1, first.Revision);
        await Assert.ThrowsAsync<StateConflictException>(() => _stores.Aliases.SetAsync(alias, [new AliasArm($"{alias}@v2", 1.0, "production")], "bob", expectedRevision: 0));
        await Assert.ThrowsAsync<ArgumentException>(() => _stores.Aliases.SetAsync(alias, [new AliasArm($"{alias}@v2", 0.5, "x")], "bob"));

        var other = SupportsConcurrentInstances ? await ReopenAsync() : _stores;
        using var watching = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var seen = new List<AliasRoute>();
        var watcher = Task.Run(async () =>
        {
            await foreach (var route in _stores.Aliases.WatchAsync(watching.Token))
            {
                if (route.Alias != alias) continue;
                lock (seen) seen.Add(route);
                if (route.Revision >= 2) return;
            }
        });
        var second = await other.Aliases.SetAsync(alias, [new AliasArm($"{alias}@v1", 0.9, "control"), new AliasArm($"{alias}@v2", 0.1, "candidate")], "bob", expectedRevision: 1);
        Assert.Equal(2, second.Revision);
        await watcher.WaitAsync(TimeSpan.FromSeconds(60));
        var last = seen.Last();
        Assert.Equal(2, last.Revision);
        Assert.Equal([0.9, 0.1], last.Arms.Select(a => a.Weight));
        Assert.Equal("candidate", last.Arms[1].Arm);
        Assert.Contains((await _stores.Aliases.ListAsync()), r => r.Alias == alias);
        await _stores.Aliases.SetAsync(alias, [new AliasArm($"{alias}@v2", 1.0, "production")], "bob", baseModel: "/models/base");
        Assert.Equal("/models/base", (await _stores.Aliases.GetAsync(alias))!.BaseModel);
        Assert.True(await _stores.Aliases.DeleteAsync(alias, "carol"));
        Assert.Null(await _stores.Aliases.GetAsync(alias));
    }

    [Fact]
    public async Task PipelinesKeepDefinitionPausedFlagAndState()
    {
        string adapter = $"pl-{Guid.NewGuid():N}"[..12];
        var definition = JsonDocument.Parse("""{"adapter": "x", "training": {"targets": ["q_proj"], "lr": 0.005}, "empty": []}""").RootElement;
        var created = await _stores.Pipelines.UpsertAsync(adapter, definition, "mlops");
        Assert.Equal(1, created.Revision);
        Assert.False(created.Paused);
        var paused = await _stores.Pipelines.SetPausedAsync(adapter, true, "ops");
        Assert.True(paused.Paused);
        Assert.Equal(2, paused.Revision);
        var updated = await _stores.Pipelines.UpsertAsync(adapter, definition, "mlops", expectedRevision: 2);
        Assert.True(updated.Paused);
        Assert.Equal(JsonValueKind.Array, updated.Definition.GetProperty("empty").ValueKind);
        await Assert.ThrowsAsync<StateConflictException>(() => _stores.Pipelines.UpsertAsync(adapter, definition, "mlops", expectedRevision: 1));
        await Assert.ThrowsAsync<KeyNotFoundException>(() => _stores.Pipelines.SetPausedAsync("no-such-pipeline", true, "ops"));

        await _stores.Pipelines.SetStateAsync(adapter, "cursor", JsonDocument.Parse("""{"at": "1-2", "list": []}""").RootElement);
        var state = await _stores.Pipelines.GetStateAsync(adapter, "cursor");
        Assert.Equal("1-2", state!.Value.GetProperty("at").GetString());
        await _stores.Pipelines.SetStateAsync(adapter, "cursor", JsonDocument.Parse("null").RootElement);
        Assert.Null(await _stores.Pipelines.GetStateAsync(adapter, "cursor"));
        Assert.Contains(await _stores.Pipelines.ListAsync(), p => p.Adapter == adapter);
        Assert.True(await _stores.Pipelines.DeleteAsync(adapter, "mlops"));
        Assert.Null(await _stores.Pipelines.GetAsync(adapter));
    }

    private static CanaryState Canary(string candidate) => new()
    {
        Candidate = candidate, Control = "v1", Share = 0.25, StartedAt = new DateTimeOffset(2026, 12, 1, 9, 0, 0, TimeSpan.Zero), RunId = "run-7",
        Analysis = JsonDocument.Parse("""{"positive_feedback": {"p_value": 0.5, "looks": 3}, "task_metric": null}""").RootElement,
        LastVerdict = JsonDocument.Parse("""{"decision": "continue", "reasons": []}""").RootElement,
    };

    [Fact]
    public async Task CanariesRoundTripAndChangeByRevision()
    {
        var canaries = _stores.Canaries;
        string adapter = $"cn-{Guid.NewGuid():N}"[..12];
        Assert.Null(await canaries.GetAsync(adapter));
        var started = await canaries.PutAsync(adapter, Canary("v2"), expectedRevision: 0);
        Assert.Equal(1, started.Revision);
        await Assert.ThrowsAsync<StateConflictException>(() => canaries.PutAsync(adapter, Canary("v3"), expectedRevision: 0));

        var read = await canaries.GetAsync(adapter);
        Assert.NotNull(read);
        Assert.Equal(("v2", "v1", 0.25, "run-7", 1L), (read.Candidate, read.Control, read.Share, read.RunId, read.Revision));
        Assert.Equal(started.StartedAt, read.StartedAt);
        Assert.Equal(3, read.Analysis!.Value.GetProperty("positive_feedback").GetProperty("looks").GetInt32());
        Assert.Equal(JsonValueKind.Array, read.LastVerdict!.Value.GetProperty("reasons").ValueKind);

        var checkedOnce = await canaries.PutAsync(adapter, read with { ApprovalId = "ap-1" }, read.Revision);
        Assert.Equal(2, checkedOnce.Revision);
        // A write against what was read before that check loses.
        await Assert.ThrowsAsync<StateConflictException>(() => canaries.PutAsync(adapter, read, read.Revision));
        Assert.Equal("ap-1", (await canaries.GetAsync(adapter))!.ApprovalId);

        Assert.True(await canaries.ClearAsync(adapter));
        Assert.Null(await canaries.GetAsync(adapter));
        Assert.False(await canaries.ClearAsync(adapter));
        // The canary ended: a monitor that read it before cannot bring it back, and the next canary's revisions go on counting.
        await Assert.ThrowsAsync<StateConflictException>(() => canaries.PutAsync(adapter, checkedOnce, checkedOnce.Revision));
        Assert.Equal(3, (await canaries.PutAsync(adapter, Canary("v3"), expectedRevision: 0)).Revision);
        await Assert.ThrowsAsync<StateConflictException>(() => canaries.ClearAsync(adapter, expectedRevision: 2));
        Assert.Equal("v3", (await canaries.GetAsync(adapter))!.Candidate);
    }

    [Fact]
    public async Task ACanaryStoredInThePipelineStateBeforeTheCanaryStoreStillReads()
    {
        // As LifecycleManager wrote it before the canary store: the pipeline's state under "canary", the controller's JSON options.
        string adapter = $"cl-{Guid.NewGuid():N}"[..12];
        var legacy = JsonDocument.Parse("""
            {
              "candidate": "v4", "control": "v3", "share": 0.1, "started_at": "2026-11-30T08:00:00+00:00", "run_id": "run-3",
              "analysis": {"positive_feedback": null, "task_metric": null}, "approval_id": null, "last_verdict": null
            }
            """).RootElement;
        await _stores.Pipelines.SetStateAsync(adapter, "canary", legacy);

        var read = await _stores.Canaries.GetAsync(adapter);
        Assert.NotNull(read);
        Assert.Equal(("v4", "v3", 0.1, 0L), (read.Candidate, read.Control, read.Share, read.Revision));
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 8, 0, 0, TimeSpan.Zero), read.StartedAt);

        // The first write moves it out of the pipeline state.
        var moved = await _stores.Canaries.PutAsync(adapter, read with { ApprovalId = "ap-9" }, read.Revision);
        Assert.Equal(1, moved.Revision);
        Assert.Null(await _stores.Pipelines.GetStateAsync(adapter, "canary"));
        Assert.Equal("ap-9", (await _stores.Canaries.GetAsync(adapter))!.ApprovalId);

        // Ending one that was never moved removes it too.
        string other = adapter + "b";
        await _stores.Pipelines.SetStateAsync(other, "canary", legacy);
        Assert.True(await _stores.Canaries.ClearAsync(other));
        Assert.Null(await _stores.Canaries.GetAsync(other));
        Assert.Null(await _stores.Pipelines.GetStateAsync(other, "canary"));
    }

    [Fact]
    public async Task ApprovalsArePendingOnceAndResolveOnce()
    {
        string adapter = $"ap-{Guid.NewGuid():N}"[..12];
        var evidence = JsonDocument.Parse("""{"reasons": [], "decision": "candidate_better"}""").RootElement;
        var first = await _stores.Approvals.RequestAsync(adapter, "v2", ApprovalAction.Promote, evidence);
        var again = await _stores.Approvals.RequestAsync(adapter, "v2", ApprovalAction.Promote, evidence);
        Assert.Equal(first.Id, again.Id);
        Assert.Single(await _stores.Approvals.ListAsync(ApprovalStatus.Pending, adapter));

        var resolved = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => Task.Run(async () =>
        {
            try { return await _stores.Approvals.ResolveAsync(first.Id, i % 2 == 0, $"op{i}", "looks good"); }
            catch (StateConflictException) { return null; }
        })));
        var winner = Assert.Single(resolved, r => r is not null)!;
        Assert.Equal("looks good", winner.Comment);
        var stored = await _stores.Approvals.GetAsync(first.Id);
        Assert.Equal(winner.Status, stored!.Status);
        Assert.Equal(JsonValueKind.Array, stored.Evidence!.Value.GetProperty("reasons").ValueKind);
        Assert.Empty(await _stores.Approvals.ListAsync(ApprovalStatus.Pending, adapter));
        var next = await _stores.Approvals.RequestAsync(adapter, "v2", ApprovalAction.Promote, null);
        Assert.NotEqual(first.Id, next.Id);
        await Assert.ThrowsAsync<KeyNotFoundException>(() => _stores.Approvals.ResolveAsync("nope", true, "x", null));
    }

    [Fact]
    public async Task JobHistoryUpdatesStepsAndListsNewestFirst()
    {
        string adapter = $"jb-{Guid.NewGuid():N}"[..12];
        var start = DateTimeOffset.UtcNow;
        await _stores.Jobs.RecordAsync(new JobRun { RunId = "r1", Adapter = adapter, Step = PipelineStep.Curate, Status = StepStatus.Running, StartedAt = start });
        await _stores.Jobs.RecordAsync(new JobRun { RunId = "r1", Adapter = adapter, Step = PipelineStep.Curate, Status = StepStatus.Succeeded, StartedAt = start, FinishedAt = start.AddSeconds(1), Message = "12 examples" });
        await _stores.Jobs.RecordAsync(new JobRun { RunId = "r1", Adapter = adapter, Step = PipelineStep.Train, Status = StepStatus.Running, StartedAt = start.AddSeconds(2) });
        var jobs = await _stores.Jobs.ListAsync(adapter);
        Assert.Equal([PipelineStep.Train, PipelineStep.Curate], jobs.Select(j => j.Step));
        Assert.Equal(StepStatus.Succeeded, jobs[1].Status);
        Assert.Equal("12 examples", jobs[1].Message);
    }

    [Fact]
    public async Task LeasesAreExclusiveFencedAndExpire()
    {
        string name = $"ls-{Guid.NewGuid():N}";
        var a = await _stores.Leases.TryAcquireAsync(name, "a", TimeSpan.FromSeconds(30));
        Assert.NotNull(a);
        Assert.Null(await _stores.Leases.TryAcquireAsync(name, "b", TimeSpan.FromSeconds(30)));
        Assert.True(await _stores.Leases.IsCurrentAsync(a));
        Assert.True(await _stores.Leases.RenewAsync(a, TimeSpan.FromMilliseconds(300)));

        // Expire, then another owner takes it with a larger fencing token; the old holder is stale.
        LeaseGrant? b = null;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (b is null && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            b = await _stores.Leases.TryAcquireAsync(name, "b", TimeSpan.FromSeconds(30));
        }
        Assert.NotNull(b);
        Assert.True(b.Token > a.Token);
        Assert.False(await _stores.Leases.IsCurrentAsync(a));
        Assert.False(await _stores.Leases.RenewAsync(a, TimeSpan.FromSeconds(30)));
        await _stores.Leases.ReleaseAsync(a);
        Assert.True(await _stores.Leases.IsCurrentAsync(b));
        await _stores.Leases.ReleaseAsync(b);
        Assert.NotNull(await _stores.Leases.TryAcquireAsync(name, "c", TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task AFiringIsClaimedExactlyOnce()
    {
        string key = $"fire-{Guid.NewGuid():N}";
        var claims = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(() => _stores.Leases.TryClaimOnceAsync(key, $"replica{i}", TimeSpan.FromMinutes(5)))));
        Assert.Equal(1, claims.Count(c => c));
    }

    [Fact]
    public async Task StateSurvivesReopening()
    {
        string adapter = $"dur-{Guid.NewGuid():N}"[..12];
        await _stores.Registry.RegisterAsync(Version(adapter, "v1"), "alice", "r");
        await _stores.Registry.TransitionAsync(adapter, "v1", VersionState.Production, "alice", "go");
        await _stores.Aliases.SetAsync(adapter, [new AliasArm($"{adapter}@v1", 1, "production")], "alice");
        await _stores.Pipelines.UpsertAsync(adapter, JsonDocument.Parse("{}").RootElement, "mlops");
        Assert.Equal("v1", await _stores.Registry.AllocateVersionAsync(adapter));
        await _stores.Canaries.PutAsync(adapter, Canary("v2"));
        var reopened = await ReopenAsync();
        Assert.Equal((1L, "v2"), ((await reopened.Canaries.GetAsync(adapter))!.Revision, (await reopened.Canaries.GetAsync(adapter))!.Candidate));
        Assert.Equal(VersionState.Production, (await reopened.Registry.GetAsync(adapter, "v1"))!.State);
        Assert.Equal(1, (await reopened.Aliases.GetAsync(adapter))!.Revision);
        Assert.NotNull(await reopened.Pipelines.GetAsync(adapter));
        Assert.Equal(2, (await reopened.Registry.GetAuditAsync(adapter)).Count);
        Assert.Equal("v2", await reopened.Registry.AllocateVersionAsync(adapter));
    }

    /// <summary>Every (from, to) pair: the store moves a version exactly along the table's edges, and refuses the rest naming both states.</summary>
    [Fact]
    public async Task TransitionsFollowTheTableAndNothingElse()
    {
        var registry = _stores.Registry;
        var states = Enum.GetValues<VersionState>();
        foreach (var from in states)
        {
            foreach (var to in states)
            {
                string adapter = $"table-{from}-{to}".ToLowerInvariant();
                await registry.RegisterAsync(new RegisteredVersion { Adapter = adapter, Version = "v1", ArtifactPath = "/a", Sha256 = "00", BaseModel = "base" }, "t", "r");
                // Walk to `from` along legal edges (the path itself is checked by the store).
                foreach (var step in PathTo(from)) await registry.TransitionAsync(adapter, "v1", step, "t", "setup");
                if (VersionTransitions.IsLegal(from, to))
                {
                    Assert.Equal(to, (await registry.TransitionAsync(adapter, "v1", to, "t", "move")).State);
                }
                else
                {
                    var refused = await Assert.ThrowsAsync<StateConflictException>(() => registry.TransitionAsync(adapter, "v1", to, "t", "move"));
                    Assert.Contains("never moves", refused.Message);
                    Assert.Equal(from, (await registry.GetAsync(adapter, "v1"))!.State);
                }
            }
        }
    }

    private static VersionState[] PathTo(VersionState state) => state switch
    {
        VersionState.Candidate => [],
        VersionState.Canary => [VersionState.Canary],
        VersionState.Production => [VersionState.Production],
        VersionState.Retired => [VersionState.Production, VersionState.Retired],
        VersionState.Rejected => [VersionState.Rejected],
        VersionState.RolledBack => [VersionState.Canary, VersionState.RolledBack],
        _ => throw new ArgumentOutOfRangeException(nameof(state)),
    };
}

public sealed class RedisLifecycleStoreContractTests(RedisServerFixture redis) : LifecycleStoreContractTests, IClassFixture<RedisServerFixture>
{
    private readonly string _prefix = $"t{Guid.NewGuid():N}"[..10];
    private readonly List<IConnectionMultiplexer> _connections = [];

    protected override bool SupportsConcurrentInstances => true;

    private protected override async Task<LifecycleStoreSet> OpenAsync()
    {
        var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        _connections.Add(connection);
        return RedisLifecycleStores.Open(connection, _prefix);
    }

    private protected override Task<LifecycleStoreSet> ReopenAsync() => OpenAsync();

    public override async Task DisposeAsync()
    {
        foreach (var c in _connections) await c.DisposeAsync();
    }
}

public sealed class EmbeddedLifecycleStoreContractTests : LifecycleStoreContractTests
{
    private readonly string _directory = Directory.CreateTempSubdirectory("tunegw-lifecycle-").FullName;
    private LifecycleStoreSet? _store;

    protected override bool SupportsConcurrentInstances => false;

    private protected override Task<LifecycleStoreSet> OpenAsync()
    {
        _store = EmbeddedLifecycleStores.Open(_directory);
        return Task.FromResult(_store);
    }

    private protected override Task<LifecycleStoreSet> ReopenAsync()
    {
        _store?.Dispose();
        return OpenAsync();
    }

    [Fact]
    public void ASecondProcessIsKeptOut()
    {
        var error = Assert.Throws<IOException>(() => EmbeddedLifecycleStores.Open(_directory));
        Assert.Contains("in use by another process", error.Message);
    }

    public override Task DisposeAsync()
    {
        _store?.Dispose();
        try { Directory.Delete(_directory, recursive: true); }
        catch (IOException) { }
        return Task.CompletedTask;
    }
}
