using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Tests.Dashboard;

/// <summary>
/// The lifecycle stores in this process's memory, for the dashboard's test host until the
/// embedded implementations land (branch <c>lifecycle</c>); one lock, audit on every change, the
/// same contract as the interfaces document (compare-and-set transitions, resolve-once approvals).
/// </summary>
internal sealed class InMemoryLifecycleStores : IAdapterRegistry, IAliasStore, IPipelineStore, IApprovalStore, IJobHistory
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly Dictionary<string, List<RegisteredVersion>> _versions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _nextVersion = new(StringComparer.Ordinal);
    private readonly List<AuditEvent> _audit = [];
    private readonly Dictionary<string, AliasRoute> _routes = new(StringComparer.Ordinal);
    private readonly List<Channel<AliasRoute>> _watchers = [];
    private readonly Dictionary<string, PipelineRecord> _pipelines = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Adapter, string Key), JsonElement> _state = [];
    private readonly Dictionary<string, Approval> _approvals = new(StringComparer.Ordinal);
    private readonly Dictionary<(string RunId, string Step), JobRun> _jobs = [];
    private long _sequence;
    private long _approvalIds;

    public InMemoryLifecycleStores(TimeProvider? time = null) => _time = time ?? TimeProvider.System;

    private DateTimeOffset Now => _time.GetUtcNow();

    // ---- IAdapterRegistry ----

    public Task<string> AllocateVersionAsync(string adapter, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            int next = _nextVersion.GetValueOrDefault(adapter, 1);
            while (_versions.TryGetValue(adapter, out var list) && list.Any(v => v.Version == $"v{next}")) next++;
            _nextVersion[adapter] = next + 1;
            return Task.FromResult($"v{next}");
        }
    }

    public Task<RegisteredVersion> RegisterAsync(RegisteredVersion version, string actor, string reason, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var list = _versions.TryGetValue(version.Adapter, out var existing) ? existing : _versions[version.Adapter] = [];
            if (list.Any(v => v.Version == version.Version)) throw new InvalidOperationException($"{version.ModelName} is already registered.");
            var stored = version with { CreatedAt = Now, UpdatedAt = Now };
            list.Add(stored);
            AppendLocked(new AuditEvent { Actor = actor, Action = "register", Adapter = version.Adapter, Version = version.Version, To = State(version.State), Reason = reason });
            return Task.FromResult(stored);
        }
    }

    public Task<RegisteredVersion?> GetAsync(string adapter, string version, CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult(Find(adapter, version));
    }

    public Task<IReadOnlyList<RegisteredVersion>> ListVersionsAsync(string adapter, CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult<IReadOnlyList<RegisteredVersion>>(_versions.TryGetValue(adapter, out var list) ? [.. list] : []);
    }

    public Task<IReadOnlyList<string>> ListAdaptersAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult<IReadOnlyList<string>>([.. _versions.Keys.Order(StringComparer.Ordinal)]);
    }

    public Task<RegisteredVersion> TransitionAsync(string adapter, string version, VersionState to, string actor, string reason,
        IReadOnlyCollection<VersionState>? expectedFrom = null, JsonElement? details = null, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var current = Find(adapter, version) ?? throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            if (expectedFrom is not null && !expectedFrom.Contains(current.State))
                throw new StateConflictException($"{current.ModelName} is {current.State}, not {string.Join(" or ", expectedFrom)}.");
            var moved = Replace(current with { State = to, StateReason = reason, UpdatedAt = Now });
            AppendLocked(new AuditEvent { Actor = actor, Action = "transition", Adapter = adapter, Version = version, From = State(current.State), To = State(to), Reason = reason, Details = details });
            return Task.FromResult(moved);
        }
    }

    public Task<RegisteredVersion> SetEvaluationAsync(string adapter, string version, JsonElement evaluation, string actor, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var current = Find(adapter, version) ?? throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            var updated = Replace(current with { Evaluation = evaluation, UpdatedAt = Now });
            AppendLocked(new AuditEvent { Actor = actor, Action = "evaluation", Adapter = adapter, Version = version });
            return Task.FromResult(updated);
        }
    }

    public Task<AuditEvent> AppendAuditAsync(AuditEvent auditEvent, CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult(AppendLocked(auditEvent));
    }

    public Task<IReadOnlyList<AuditEvent>> GetAuditAsync(string? adapter = null, long afterSequence = 0, int limit = 100, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult<IReadOnlyList<AuditEvent>>(
                [.. _audit.Where(e => e.Sequence > afterSequence && (adapter is null || e.Adapter == adapter)).Take(limit)]);
        }
    }

    private RegisteredVersion? Find(string adapter, string version) =>
        _versions.TryGetValue(adapter, out var list) ? list.FirstOrDefault(v => v.Version == version) : null;

    private RegisteredVersion Replace(RegisteredVersion updated)
    {
        var list = _versions[updated.Adapter];
        list[list.FindIndex(v => v.Version == updated.Version)] = updated;
        return updated;
    }

    private AuditEvent AppendLocked(AuditEvent auditEvent)
    {
        var stored = auditEvent with { Sequence = ++_sequence, At = Now };
        _audit.Add(stored);
        return stored;
    }

    private static string State(VersionState state) => state.ToString();

    // ---- IAliasStore ----

    Task<AliasRoute?> IAliasStore.GetAsync(string alias, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_routes.GetValueOrDefault(alias));
    }

    Task<IReadOnlyList<AliasRoute>> IAliasStore.ListAsync(CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult<IReadOnlyList<AliasRoute>>([.. _routes.Values.OrderBy(r => r.Alias, StringComparer.Ordinal)]);
    }

    public Task<AliasRoute> SetAsync(string alias, IReadOnlyList<AliasArm> arms, string actor, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        if (arms.Count == 0 || arms.Any(a => a.Weight < 0) || Math.Abs(arms.Sum(a => a.Weight) - 1) > 1e-6)
            throw new ArgumentException("Weights must be non-negative and sum to 1.", nameof(arms));
        lock (_lock)
        {
            var before = _routes.GetValueOrDefault(alias);
            if (expectedRevision is long expected && (before?.Revision ?? 0) != expected)
                throw new StateConflictException($"The route of '{alias}' changed (revision {before?.Revision ?? 0}, expected {expected}).");
            var route = new AliasRoute { Alias = alias, Arms = [.. arms], Revision = (before?.Revision ?? 0) + 1, UpdatedAt = Now, UpdatedBy = actor };
            _routes[alias] = route;
            foreach (var watcher in _watchers) watcher.Writer.TryWrite(route);
            return Task.FromResult(route);
        }
    }

    Task<bool> IAliasStore.DeleteAsync(string alias, string actor, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_routes.Remove(alias));
    }

    public async IAsyncEnumerable<AliasRoute> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var channel = Channel.CreateUnbounded<AliasRoute>();
        lock (_lock)
        {
            foreach (var route in _routes.Values) channel.Writer.TryWrite(route);
            _watchers.Add(channel);
        }
        try
        {
            await foreach (var route in channel.Reader.ReadAllAsync(cancellationToken)) yield return route;
        }
        finally
        {
            lock (_lock) _watchers.Remove(channel);
        }
    }

    // ---- IPipelineStore ----

    Task<PipelineRecord?> IPipelineStore.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_pipelines.GetValueOrDefault(adapter));
    }

    Task<IReadOnlyList<PipelineRecord>> IPipelineStore.ListAsync(CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult<IReadOnlyList<PipelineRecord>>([.. _pipelines.Values.OrderBy(p => p.Adapter, StringComparer.Ordinal)]);
    }

    public Task<PipelineRecord> UpsertAsync(string adapter, JsonElement definition, string actor, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var before = _pipelines.GetValueOrDefault(adapter);
            if (expectedRevision is long expected && (before?.Revision ?? 0) != expected)
                throw new StateConflictException($"The pipeline of '{adapter}' changed.");
            var record = new PipelineRecord { Adapter = adapter, Definition = definition.Clone(), Paused = before?.Paused ?? false, Revision = (before?.Revision ?? 0) + 1, UpdatedAt = Now, UpdatedBy = actor };
            _pipelines[adapter] = record;
            return Task.FromResult(record);
        }
    }

    public Task<PipelineRecord> SetPausedAsync(string adapter, bool paused, string actor, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var before = _pipelines.GetValueOrDefault(adapter) ?? throw new KeyNotFoundException($"No pipeline for '{adapter}'.");
            var record = before with { Paused = paused, Revision = before.Revision + 1, UpdatedAt = Now, UpdatedBy = actor };
            _pipelines[adapter] = record;
            return Task.FromResult(record);
        }
    }

    Task<bool> IPipelineStore.DeleteAsync(string adapter, string actor, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_pipelines.Remove(adapter));
    }

    public Task<JsonElement?> GetStateAsync(string adapter, string key, CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult<JsonElement?>(_state.TryGetValue((adapter, key), out var value) ? value : null);
    }

    public Task SetStateAsync(string adapter, string key, JsonElement value, CancellationToken cancellationToken = default)
    {
        lock (_lock) _state[(adapter, key)] = value.Clone();
        return Task.CompletedTask;
    }

    // ---- IApprovalStore ----

    public Task<Approval> RequestAsync(string adapter, string version, string action, JsonElement? evidence, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var pending = _approvals.Values.FirstOrDefault(a => a.Status == ApprovalStatus.Pending && a.Adapter == adapter && a.Version == version && a.Action == action);
            if (pending is not null) return Task.FromResult(pending);
            var approval = new Approval { Id = $"apr-{++_approvalIds}", Adapter = adapter, Version = version, Action = action, Evidence = evidence?.Clone(), CreatedAt = Now };
            _approvals[approval.Id] = approval;
            return Task.FromResult(approval);
        }
    }

    Task<Approval?> IApprovalStore.GetAsync(string id, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_approvals.GetValueOrDefault(id));
    }

    Task<IReadOnlyList<Approval>> IApprovalStore.ListAsync(ApprovalStatus? status, string? adapter, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return Task.FromResult<IReadOnlyList<Approval>>(
                [.. _approvals.Values.Where(a => (status is null || a.Status == status) && (adapter is null || a.Adapter == adapter)).OrderBy(a => a.CreatedAt)]);
        }
    }

    public Task<Approval> ResolveAsync(string id, bool approve, string actor, string? comment, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var approval = _approvals.GetValueOrDefault(id) ?? throw new KeyNotFoundException($"No approval '{id}'.");
            if (approval.Status != ApprovalStatus.Pending) throw new StateConflictException($"Approval '{id}' is already {approval.Status}.");
            var resolved = approval with { Status = approve ? ApprovalStatus.Approved : ApprovalStatus.Rejected, ResolvedBy = actor, ResolvedAt = Now, Comment = comment };
            _approvals[id] = resolved;
            return Task.FromResult(resolved);
        }
    }

    // ---- IJobHistory ----

    public Task RecordAsync(JobRun run, CancellationToken cancellationToken = default)
    {
        lock (_lock) _jobs[(run.RunId, run.Step)] = run;
        return Task.CompletedTask;
    }

    Task<IReadOnlyList<JobRun>> IJobHistory.ListAsync(string? adapter, int limit, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return Task.FromResult<IReadOnlyList<JobRun>>(
                [.. _jobs.Values.Where(j => adapter is null || j.Adapter == adapter).OrderByDescending(j => j.StartedAt).Take(limit)]);
        }
    }
}
