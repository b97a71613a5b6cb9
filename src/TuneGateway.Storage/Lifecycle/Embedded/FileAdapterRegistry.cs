using System.Text;
using System.Text.Json;

namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded registry: versions with their states, version counters, and the audit trail (<c>audit.jsonl</c>, appended and fsynced).</summary>
internal sealed class FileAdapterRegistry(LifecycleFile file) : IAdapterRegistry
{
    private readonly List<AuditEvent> _audit = ReadAudit(Path.Combine(file.RootDirectory, "audit.jsonl"));

    private static List<AuditEvent> ReadAudit(string path)
    {
        var events = new List<AuditEvent>();
        if (!File.Exists(path)) return events;
        foreach (string line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try { events.Add(LifecycleJson.Deserialize<AuditEvent>(line)); }
            catch (JsonException) { break; } // a torn last line from a crash
        }
        return events;
    }

    public Task<string> AllocateVersionAsync(string adapter, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        lock (file.Lock)
        {
            long next = file.State.VersionCounters.GetValueOrDefault(adapter) + 1;
            file.State.VersionCounters[adapter] = next;
            file.Save();
            return Task.FromResult($"v{next}");
        }
    }

    public Task<RegisteredVersion> RegisterAsync(RegisteredVersion version, string actor, string reason, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(version.Adapter, "adapter");
        LifecycleRules.ValidateName(version.Version, "version");
        lock (file.Lock)
        {
            var versions = VersionsOf(version.Adapter, create: true)!;
            if (versions.ContainsKey(version.Version))
                throw new StateConflictException($"{version.Adapter}@{version.Version} is already registered.");
            var now = file.Now;
            var stored = version with { CreatedAt = now, UpdatedAt = now };
            versions[version.Version] = stored;
            file.Save();
            AppendAudit(new AuditEvent { Actor = actor, Action = "register", Adapter = version.Adapter, Version = version.Version, To = Name(stored.State), Reason = reason });
            return Task.FromResult(stored);
        }
    }

    public Task<RegisteredVersion?> GetAsync(string adapter, string version, CancellationToken cancellationToken = default)
    {
        lock (file.Lock) return Task.FromResult(VersionsOf(adapter)?.GetValueOrDefault(version));
    }

    public Task<IReadOnlyList<RegisteredVersion>> ListVersionsAsync(string adapter, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
            return Task.FromResult<IReadOnlyList<RegisteredVersion>>(VersionsOf(adapter)?.Values.OrderBy(v => v.CreatedAt).ThenBy(v => LifecycleRules.VersionNumber(v.Version)).ToArray() ?? []);
    }

    public Task<IReadOnlyList<string>> ListAdaptersAsync(CancellationToken cancellationToken = default)
    {
        lock (file.Lock) return Task.FromResult<IReadOnlyList<string>>(file.State.Versions.Keys.Order(StringComparer.Ordinal).ToArray());
    }

    public Task<RegisteredVersion> TransitionAsync(string adapter, string version, VersionState to, string actor, string reason,
        IReadOnlyCollection<VersionState>? expectedFrom = null, JsonElement? details = null, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var versions = VersionsOf(adapter);
            if (versions is null || !versions.TryGetValue(version, out var current))
                throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            var allowed = VersionTransitions.Allowed(to, expectedFrom);
            if (!allowed.Contains(current.State))
                throw new StateConflictException($"{adapter}@{version} is {Name(current.State)}, not {LifecycleRules.DescribeStates(allowed)}" +
                    (VersionTransitions.IsLegal(current.State, to) ? "." : $"; a version never moves from {Name(current.State)} to {Name(to)}."));
            var updated = current with { State = to, StateReason = reason, UpdatedAt = file.Now };
            versions[version] = updated;
            file.Save();
            AppendAudit(new AuditEvent { Actor = actor, Action = "transition", Adapter = adapter, Version = version, From = Name(current.State), To = Name(to), Reason = reason, Details = details });
            return Task.FromResult(updated);
        }
    }

    public Task<RegisteredVersion> SetEvaluationAsync(string adapter, string version, JsonElement evaluation, string actor, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var versions = VersionsOf(adapter);
            if (versions is null || !versions.TryGetValue(version, out var current))
                throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            var updated = current with { Evaluation = evaluation.Clone(), UpdatedAt = file.Now };
            versions[version] = updated;
            file.Save();
            AppendAudit(new AuditEvent { Actor = actor, Action = "evaluation", Adapter = adapter, Version = version, Details = evaluation.Clone() });
            return Task.FromResult(updated);
        }
    }

    public Task<AuditEvent> AppendAuditAsync(AuditEvent auditEvent, CancellationToken cancellationToken = default)
    {
        lock (file.Lock) return Task.FromResult(AppendAudit(auditEvent));
    }

    public Task<IReadOnlyList<AuditEvent>> GetAuditAsync(string? adapter = null, long afterSequence = 0, int limit = 100, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            return Task.FromResult<IReadOnlyList<AuditEvent>>(_audit
                .Where(e => e.Sequence > afterSequence && (adapter is null || e.Adapter == adapter))
                .Take(Math.Clamp(limit, 1, 10_000)).ToArray());
        }
    }

    private AuditEvent AppendAudit(AuditEvent auditEvent)
    {
        var stored = auditEvent with { Sequence = ++file.State.AuditSequence, At = auditEvent.At == default ? file.Now : auditEvent.At };
        using (var stream = new FileStream(Path.Combine(file.RootDirectory, "audit.jsonl"), FileMode.Append, FileAccess.Write, FileShare.Read))
        {
            stream.Write(Encoding.UTF8.GetBytes(LifecycleJson.Serialize(stored) + "\n"));
            stream.Flush(flushToDisk: true);
        }
        _audit.Add(stored);
        file.Save();
        return stored;
    }

    private Dictionary<string, RegisteredVersion>? VersionsOf(string adapter, bool create = false)
    {
        if (file.State.Versions.TryGetValue(adapter, out var versions)) return versions;
        if (!create) return null;
        return file.State.Versions[adapter] = new Dictionary<string, RegisteredVersion>(StringComparer.Ordinal);
    }

    private static string Name(VersionState state) => LifecycleJson.Name(state);
}
