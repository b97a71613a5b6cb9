using System.Text;
using System.Text.Json;

namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>
/// What the embedded stores share (<c>tunegw serve</c> without Redis): the lifecycle state in
/// <c>{data}/lifecycle/state.json</c>, rewritten atomically (temporary file, fsync, rename) after
/// every change, and one lock that makes every operation of every store atomic, so the semantics
/// are those of the Redis stores. A <c>.lock</c> file keeps a second process out. The audit trail
/// is the registry's own file.
/// </summary>
internal sealed class LifecycleFile : IDisposable
{
    private readonly string _root;
    private readonly FileStream _processLock;

    public LifecycleFile(string dataDirectory, TimeProvider? time = null)
    {
        Time = time ?? TimeProvider.System;
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
        State = File.Exists(statePath) ? LifecycleJson.Deserialize<LifecycleFileState>(File.ReadAllText(statePath)) : new LifecycleFileState();
    }

    public string RootDirectory => _root;

    public TimeProvider Time { get; }

    public DateTimeOffset Now => Time.GetUtcNow();

    /// <summary>Held by every operation of every store.</summary>
    public Lock Lock { get; } = new();

    /// <summary>Read and changed under <see cref="Lock"/>, then saved.</summary>
    public LifecycleFileState State { get; }

    /// <summary>Writes the whole state atomically: a reader (or a crash) sees the old file or the new one.</summary>
    public void Save()
    {
        string path = Path.Combine(_root, "state.json");
        string temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(Encoding.UTF8.GetBytes(LifecycleJson.Serialize(State)));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
    }

    public void Dispose() => _processLock.Dispose();
}

/// <summary>Everything but the audit trail, as one JSON document (<c>state.json</c>).</summary>
internal sealed class LifecycleFileState
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
