using System.Text;
using System.Text.Json;

namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>
/// The embedded lifecycle store for a single process (<c>tunegw serve</c> without Redis): the
/// registry, aliases, pipelines and their state, approvals, job history and leases in
/// <c>{data}/lifecycle/state.json</c>, rewritten atomically (temporary file, fsync, rename) after
/// every change, and the audit trail appended to <c>audit.jsonl</c> (fsynced). A <c>.lock</c> file
/// keeps a second process out; within the process one lock makes every operation atomic, so the
/// semantics are those of the Redis store.
/// </summary>
internal sealed class FileLifecycleStore : IAdapterRegistry, IAliasStore, IPipelineStore, IApprovalStore, ICanaryStore, IJobHistory, ILeaseManager, IDisposable
{
    private const int JobHistoryLimit = 5000;
    private readonly string _root;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly FileStream _processLock;
    private readonly List<AuditEvent> _audit = [];
    private readonly InProcessAliases _aliasWatchers = new();
    private State _state;

    public FileLifecycleStore(string dataDirectory, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _root = Path.GetFullPath(Path.Combine(dataDirectory, "lifecycle"));
        Directory.CreateDirectory(_root);
        try
        {
            _processLock = new FileStream(Path.Combine(_root, ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new IOException($"'{_root}' is in use by another process (its .lock is held); the embedded store serves one process. Use Redis for several.", ex);
        }
        string statePath = Path.Combine(_root, "state.json");
        _state = File.Exists(statePath) ? LifecycleJson.Deserialize<State>(File.ReadAllText(statePath)) : new State();
        string auditPath = Path.Combine(_root, "audit.jsonl");
        if (File.Exists(auditPath))
        {
            foreach (string line in File.ReadLines(auditPath))
            {
                if (string.IsNullOrWhiteSpace(line)) continue;
                try { _audit.Add(LifecycleJson.Deserialize<AuditEvent>(line)); }
                catch (JsonException) { break; } // a torn last line from a crash
            }
        }
    }

    public string RootDirectory => _root;

    // ---------------------------------------------------------------- registry

    public Task<string> AllocateVersionAsync(string adapter, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        lock (_lock)
        {
            long next = _state.VersionCounters.GetValueOrDefault(adapter) + 1;
            _state.VersionCounters[adapter] = next;
            Save();
            return Task.FromResult($"v{next}");
        }
    }

    public Task<RegisteredVersion> RegisterAsync(RegisteredVersion version, string actor, string reason, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(version.Adapter, "adapter");
        LifecycleRules.ValidateName(version.Version, "version");
        lock (_lock)
        {
            var versions = VersionsOf(version.Adapter, create: true)!;
            if (versions.ContainsKey(version.Version))
                throw new StateConflictException($"{version.Adapter}@{version.Version} is already registered.");
            var now = _time.GetUtcNow();
            var stored = version with { CreatedAt = now, UpdatedAt = now };
            versions[version.Version] = stored;
            Save();
            AppendAudit(new AuditEvent { Actor = actor, Action = "register", Adapter = version.Adapter, Version = version.Version, To = Name(stored.State), Reason = reason });
            return Task.FromResult(stored);
        }
    }

    public Task<RegisteredVersion?> GetAsync(string adapter, string version, CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult(VersionsOf(adapter)?.GetValueOrDefault(version));
    }

    public Task<IReadOnlyList<RegisteredVersion>> ListVersionsAsync(string adapter, CancellationToken cancellationToken = default)
    {
        lock (_lock)
            return Task.FromResult<IReadOnlyList<RegisteredVersion>>(VersionsOf(adapter)?.Values.OrderBy(v => v.CreatedAt).ThenBy(v => VersionNumber(v.Version)).ToArray() ?? []);
    }

    public Task<IReadOnlyList<string>> ListAdaptersAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult<IReadOnlyList<string>>(_state.Versions.Keys.Order(StringComparer.Ordinal).ToArray());
    }

    public Task<RegisteredVersion> TransitionAsync(string adapter, string version, VersionState to, string actor, string reason,
        IReadOnlyCollection<VersionState>? expectedFrom = null, JsonElement? details = null, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var versions = VersionsOf(adapter);
            if (versions is null || !versions.TryGetValue(version, out var current))
                throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            var allowed = VersionTransitions.Allowed(to, expectedFrom);
            if (!allowed.Contains(current.State))
                throw new StateConflictException($"{adapter}@{version} is {Name(current.State)}, not {LifecycleRules.DescribeStates(allowed)}" +
                    (VersionTransitions.IsLegal(current.State, to) ? "." : $"; a version never moves from {Name(current.State)} to {Name(to)}."));
            var updated = current with { State = to, StateReason = reason, UpdatedAt = _time.GetUtcNow() };
            versions[version] = updated;
            Save();
            AppendAudit(new AuditEvent { Actor = actor, Action = "transition", Adapter = adapter, Version = version, From = Name(current.State), To = Name(to), Reason = reason, Details = details });
            return Task.FromResult(updated);
        }
    }

    public Task<RegisteredVersion> SetEvaluationAsync(string adapter, string version, JsonElement evaluation, string actor, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var versions = VersionsOf(adapter);
            if (versions is null || !versions.TryGetValue(version, out var current))
                throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            var updated = current with { Evaluation = evaluation.Clone(), UpdatedAt = _time.GetUtcNow() };
            versions[version] = updated;
            Save();
            AppendAudit(new AuditEvent { Actor = actor, Action = "evaluation", Adapter = adapter, Version = version, Details = evaluation.Clone() });
            return Task.FromResult(updated);
        }
    }

    public Task<AuditEvent> AppendAuditAsync(AuditEvent auditEvent, CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult(AppendAudit(auditEvent));
    }

    public Task<IReadOnlyList<AuditEvent>> GetAuditAsync(string? adapter = null, long afterSequence = 0, int limit = 100, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult<IReadOnlyList<AuditEvent>>(_audit
                .Where(e => e.Sequence > afterSequence && (adapter is null || e.Adapter == adapter))
                .Take(Math.Clamp(limit, 1, 10_000)).ToArray());
        }
    }

    private AuditEvent AppendAudit(AuditEvent auditEvent)
    {
        var stored = auditEvent with { Sequence = ++_state.AuditSequence, At = auditEvent.At == default ? _time.GetUtcNow() : auditEvent.At };
        using (var stream = new FileStream(Path.Combine(_root, "audit.jsonl"), FileMode.Append, FileAccess.Write, FileShare.Read))
        {
            stream.Write(Encoding.UTF8.GetBytes(LifecycleJson.Serialize(stored) + "\n"));
            stream.Flush(flushToDisk: true);
        }
        _audit.Add(stored);
        Save();
        return stored;
    }

    // ---------------------------------------------------------------- aliases

    Task<AliasRoute?> IAliasReader.GetAsync(string alias, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_state.Aliases.GetValueOrDefault(alias));
    }

    Task<IReadOnlyList<AliasRoute>> IAliasReader.ListAsync(CancellationToken cancellationToken) => Task.FromResult(ListAliases());

    public Task<AliasRoute> SetAsync(string alias, IReadOnlyList<AliasArm> arms, string actor, long? expectedRevision = null, string? baseModel = null,
        CancellationToken cancellationToken = default)
    {
        AliasRoute route;
        lock (_lock)
        {
            route = InProcessAliases.Set(_state.Aliases, alias, arms, actor, expectedRevision, baseModel, _time.GetUtcNow());
            Save();
        }
        _aliasWatchers.Notify(route);
        return Task.FromResult(route);
    }

    Task<bool> IAliasStore.DeleteAsync(string alias, string actor, CancellationToken cancellationToken)
    {
        AliasRoute? removed;
        lock (_lock)
        {
            removed = InProcessAliases.Delete(_state.Aliases, alias, actor, _time.GetUtcNow());
            if (removed is not null) Save();
        }
        if (removed is not null) _aliasWatchers.Notify(removed);
        return Task.FromResult(removed is not null);
    }

    /// <summary>Current routes, then every change (a deleted alias arrives with no arms).</summary>
    public IAsyncEnumerable<AliasRoute> WatchAsync(CancellationToken cancellationToken) => _aliasWatchers.WatchAsync(ListAliases, cancellationToken);

    private IReadOnlyList<AliasRoute> ListAliases()
    {
        lock (_lock) return InProcessAliases.Ordered(_state.Aliases.Values);
    }

    // ---------------------------------------------------------------- pipelines

    Task<PipelineRecord?> IPipelineReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_state.Pipelines.GetValueOrDefault(adapter));
    }

    Task<IReadOnlyList<PipelineRecord>> IPipelineReader.ListAsync(CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult<IReadOnlyList<PipelineRecord>>(_state.Pipelines.Values.OrderBy(p => p.Adapter, StringComparer.Ordinal).ToArray());
    }

    public Task<PipelineRecord> UpsertAsync(string adapter, JsonElement definition, string actor, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        lock (_lock)
        {
            var current = _state.Pipelines.GetValueOrDefault(adapter);
            if (expectedRevision is long expected && (current?.Revision ?? 0) != expected)
                throw new StateConflictException($"Pipeline '{adapter}' is at revision {current?.Revision ?? 0}, not {expected}.");
            var record = new PipelineRecord
            {
                Adapter = adapter, Definition = definition.Clone(), Paused = current?.Paused ?? false,
                Revision = (current?.Revision ?? 0) + 1, UpdatedAt = _time.GetUtcNow(), UpdatedBy = actor,
            };
            _state.Pipelines[adapter] = record;
            Save();
            return Task.FromResult(record);
        }
    }

    public Task<PipelineRecord> SetPausedAsync(string adapter, bool paused, string actor, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var current = _state.Pipelines.GetValueOrDefault(adapter) ?? throw new KeyNotFoundException($"No pipeline for '{adapter}'.");
            var record = current with { Paused = paused, Revision = current.Revision + 1, UpdatedAt = _time.GetUtcNow(), UpdatedBy = actor };
            _state.Pipelines[adapter] = record;
            Save();
            return Task.FromResult(record);
        }
    }

    Task<bool> IPipelineStore.DeleteAsync(string adapter, string actor, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            bool removed = _state.Pipelines.Remove(adapter);
            _state.PipelineState.Remove(adapter);
            if (removed) Save();
            return Task.FromResult(removed);
        }
    }

    public Task<JsonElement?> GetStateAsync(string adapter, string key, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            JsonElement? value = _state.PipelineState.TryGetValue(adapter, out var values) && values.TryGetValue(key, out var v) ? v.Clone() : null;
            return Task.FromResult(value);
        }
    }

    public Task SetStateAsync(string adapter, string key, JsonElement value, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (!_state.PipelineState.TryGetValue(adapter, out var values)) _state.PipelineState[adapter] = values = new(StringComparer.Ordinal);
            if (value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) values.Remove(key);
            else values[key] = value.Clone();
            Save();
        }
        return Task.CompletedTask;
    }

    // ---------------------------------------------------------------- canaries

    Task<CanaryState?> ICanaryReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(CurrentCanary(adapter));
    }

    public Task<CanaryState> PutAsync(string adapter, CanaryState state, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        lock (_lock)
        {
            CheckCanaryRevision(adapter, expectedRevision);
            long revision = _state.CanaryRevisions.GetValueOrDefault(adapter) + 1;
            _state.CanaryRevisions[adapter] = revision;
            var stored = state with { Revision = revision };
            _state.Canaries[adapter] = stored;
            RemoveLegacyCanary(adapter);
            Save();
            return Task.FromResult(stored);
        }
    }

    public Task<bool> ClearAsync(string adapter, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            CheckCanaryRevision(adapter, expectedRevision);
            bool removed = _state.Canaries.Remove(adapter) | RemoveLegacyCanary(adapter);
            if (removed) Save();
            return Task.FromResult(removed);
        }
    }

    private CanaryState? CurrentCanary(string adapter)
    {
        if (_state.Canaries.TryGetValue(adapter, out var canary)) return canary with { Revision = _state.CanaryRevisions.GetValueOrDefault(adapter) };
        return _state.PipelineState.GetValueOrDefault(adapter)?.GetValueOrDefault(CanaryState.LegacyPipelineStateKey) is { ValueKind: JsonValueKind.Object } legacy
            ? legacy.Deserialize<CanaryState>(LifecycleJson.Options)
            : null;
    }

    private void CheckCanaryRevision(string adapter, long? expectedRevision)
    {
        long current = CurrentCanary(adapter)?.Revision ?? 0;
        if (expectedRevision is long expected && current != expected)
            throw new StateConflictException($"The canary of '{adapter}' is at revision {current}, not {expected}.");
    }

    private bool RemoveLegacyCanary(string adapter) =>
        _state.PipelineState.TryGetValue(adapter, out var values) && values.Remove(CanaryState.LegacyPipelineStateKey);

    // ---------------------------------------------------------------- approvals

    public Task<Approval> RequestAsync(string adapter, string version, ApprovalAction action, JsonElement? evidence, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var pending = _state.Approvals.Values.FirstOrDefault(a => a.Status == ApprovalStatus.Pending && a.Adapter == adapter && a.Version == version && a.Action == action);
            if (pending is not null) return Task.FromResult(pending);
            var approval = new Approval
            {
                Id = Guid.NewGuid().ToString("N"), Adapter = adapter, Version = version, Action = action,
                Evidence = evidence?.Clone(), CreatedAt = _time.GetUtcNow(),
            };
            _state.Approvals[approval.Id] = approval;
            Save();
            return Task.FromResult(approval);
        }
    }

    Task<Approval?> IApprovalReader.GetAsync(string id, CancellationToken cancellationToken)
    {
        lock (_lock) return Task.FromResult(_state.Approvals.GetValueOrDefault(id));
    }

    Task<IReadOnlyList<Approval>> IApprovalReader.ListAsync(ApprovalStatus? status, string? adapter, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return Task.FromResult<IReadOnlyList<Approval>>(_state.Approvals.Values
                .Where(a => (status is null || a.Status == status) && (adapter is null || a.Adapter == adapter))
                .OrderBy(a => a.CreatedAt).ToArray());
        }
    }

    public Task<Approval> ResolveAsync(string id, bool approve, string actor, string? comment, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var current = _state.Approvals.GetValueOrDefault(id) ?? throw new KeyNotFoundException($"No approval '{id}'.");
            if (current.Status != ApprovalStatus.Pending)
                throw new StateConflictException($"Approval '{id}' was already {current.Status.ToString().ToLowerInvariant()} by {current.ResolvedBy}.");
            var resolved = current with
            {
                Status = approve ? ApprovalStatus.Approved : ApprovalStatus.Rejected, ResolvedBy = actor, ResolvedAt = _time.GetUtcNow(), Comment = comment,
            };
            _state.Approvals[id] = resolved;
            Save();
            return Task.FromResult(resolved);
        }
    }

    // ---------------------------------------------------------------- job history

    public Task RecordAsync(JobRun run, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            int at = _state.Jobs.FindIndex(j => j.RunId == run.RunId && j.Step == run.Step);
            if (at >= 0) _state.Jobs[at] = run;
            else _state.Jobs.Add(run);
            if (_state.Jobs.Count > JobHistoryLimit) _state.Jobs.RemoveRange(0, _state.Jobs.Count - JobHistoryLimit);
            Save();
        }
        return Task.CompletedTask;
    }

    Task<IReadOnlyList<JobRun>> IJobHistory.ListAsync(string? adapter, int limit, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return Task.FromResult<IReadOnlyList<JobRun>>(_state.Jobs
                .Where(j => adapter is null || j.Adapter == adapter)
                .OrderByDescending(j => j.StartedAt).Take(Math.Clamp(limit, 1, 10_000)).ToArray());
        }
    }

    // ---------------------------------------------------------------- leases

    public Task<LeaseGrant?> TryAcquireAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            if (_state.Leases.TryGetValue(name, out var held) && held.ExpiresAt > now && held.Owner != owner) return Task.FromResult<LeaseGrant?>(null);
            long token = held is not null && held.Owner == owner && held.ExpiresAt > now ? held.Token : _state.LeaseTokens.GetValueOrDefault(name) + 1;
            _state.LeaseTokens[name] = Math.Max(token, _state.LeaseTokens.GetValueOrDefault(name));
            var grant = new LeaseGrant(name, owner, token, now + ttl);
            _state.Leases[name] = grant;
            Save();
            return Task.FromResult<LeaseGrant?>(grant);
        }
    }

    public Task<bool> RenewAsync(LeaseGrant lease, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            if (!_state.Leases.TryGetValue(lease.Name, out var held) || held.Token != lease.Token || held.Owner != lease.Owner || held.ExpiresAt <= now)
                return Task.FromResult(false);
            _state.Leases[lease.Name] = held with { ExpiresAt = now + ttl };
            Save();
            return Task.FromResult(true);
        }
    }

    public Task ReleaseAsync(LeaseGrant lease, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (_state.Leases.TryGetValue(lease.Name, out var held) && held.Token == lease.Token && held.Owner == lease.Owner)
            {
                _state.Leases.Remove(lease.Name);
                Save();
            }
        }
        return Task.CompletedTask;
    }

    public Task<bool> IsCurrentAsync(LeaseGrant lease, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return Task.FromResult(_state.Leases.TryGetValue(lease.Name, out var held) && held.Token == lease.Token && held.Owner == lease.Owner
                && held.ExpiresAt > _time.GetUtcNow());
        }
    }

    public Task<bool> TryClaimOnceAsync(string key, string owner, TimeSpan retention, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            foreach (var expired in _state.Claims.Where(c => c.Value <= now).Select(c => c.Key).ToArray()) _state.Claims.Remove(expired);
            if (_state.Claims.ContainsKey(key)) return Task.FromResult(false);
            _state.Claims[key] = now + retention;
            Save();
            return Task.FromResult(true);
        }
    }

    // ---------------------------------------------------------------- persistence

    private Dictionary<string, RegisteredVersion>? VersionsOf(string adapter, bool create = false)
    {
        if (_state.Versions.TryGetValue(adapter, out var versions)) return versions;
        if (!create) return null;
        return _state.Versions[adapter] = new Dictionary<string, RegisteredVersion>(StringComparer.Ordinal);
    }

    private static long VersionNumber(string version) => version.Length > 1 && version[0] == 'v' && long.TryParse(version.AsSpan(1), out long n) ? n : long.MaxValue;

    private static string Name(VersionState state) => JsonNamingPolicy.SnakeCaseLower.ConvertName(state.ToString());

    /// <summary>Writes the whole state atomically: a reader (or a crash) sees the old file or the new one.</summary>
    private void Save()
    {
        string path = Path.Combine(_root, "state.json");
        string temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(Encoding.UTF8.GetBytes(LifecycleJson.Serialize(_state)));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
    }

    public void Dispose()
    {
        _aliasWatchers.Complete();
        _processLock.Dispose();
    }

    /// <summary>Everything but the audit trail, as one JSON document.</summary>
    private sealed class State
    {
        public Dictionary<string, Dictionary<string, RegisteredVersion>> Versions { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, long> VersionCounters { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, AliasRoute> Aliases { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, PipelineRecord> Pipelines { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, Dictionary<string, JsonElement>> PipelineState { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, Approval> Approvals { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, CanaryState> Canaries { get; set; } = new(StringComparer.Ordinal);
        /// <summary>Each adapter's last canary revision, kept when its canary ends so revisions never repeat.</summary>
        public Dictionary<string, long> CanaryRevisions { get; set; } = new(StringComparer.Ordinal);
        public List<JobRun> Jobs { get; set; } = [];
        public Dictionary<string, LeaseGrant> Leases { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, long> LeaseTokens { get; set; } = new(StringComparer.Ordinal);
        public Dictionary<string, DateTimeOffset> Claims { get; set; } = new(StringComparer.Ordinal);
        public long AuditSequence { get; set; }
    }
}
