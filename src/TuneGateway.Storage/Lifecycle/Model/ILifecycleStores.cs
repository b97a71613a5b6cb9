using System.Text.Json;

namespace TuneGateway.Storage.Lifecycle;

// The readers are public; the writers (registry, aliases, pipelines, approvals, canaries) are
// internal: outside this assembly lifecycle state is written through LifecycleManager or not at
// all, and the compiler says so. Job history and leases are the controller's, public.

/// <summary>What may be read of the registry by anyone (the lifecycle service hands out only this).</summary>
public interface IAdapterRegistryReader
{
    Task<RegisteredVersion?> GetAsync(string adapter, string version, CancellationToken cancellationToken = default);

    /// <summary>All versions of an adapter, oldest first.</summary>
    Task<IReadOnlyList<RegisteredVersion>> ListVersionsAsync(string adapter, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<string>> ListAdaptersAsync(CancellationToken cancellationToken = default);

    /// <summary>Audit events, newest last, optionally for one adapter, after a sequence number.</summary>
    Task<IReadOnlyList<AuditEvent>> GetAuditAsync(string? adapter = null, long afterSequence = 0, int limit = 100, CancellationToken cancellationToken = default);
}

/// <summary>Adapter names, versions with states and lineage, and the audit trail of every change.</summary>
internal interface IAdapterRegistry : IAdapterRegistryReader
{
    /// <summary>Next version name for an adapter ("v1", "v2", ...), allocated atomically across replicas.</summary>
    Task<string> AllocateVersionAsync(string adapter, CancellationToken cancellationToken = default);

    /// <summary>Registers a version (usually as Candidate); audited. Throws if it exists.</summary>
    Task<RegisteredVersion> RegisterAsync(RegisteredVersion version, string actor, string reason, CancellationToken cancellationToken = default);

    /// <summary>
    /// Moves a version to <paramref name="to"/> atomically, if its current state is one of
    /// <paramref name="expectedFrom"/> (any state when null); otherwise throws
    /// <see cref="StateConflictException"/>. Appends an audit event in the same operation.
    /// </summary>
    Task<RegisteredVersion> TransitionAsync(string adapter, string version, VersionState to, string actor, string reason,
        IReadOnlyCollection<VersionState>? expectedFrom = null, JsonElement? details = null, CancellationToken cancellationToken = default);

    /// <summary>Attaches evaluation results to a version; audited.</summary>
    Task<RegisteredVersion> SetEvaluationAsync(string adapter, string version, JsonElement evaluation, string actor, CancellationToken cancellationToken = default);

    /// <summary>Appends an audit event for actions that are not version transitions (alias changes, approvals, pipeline edits).</summary>
    Task<AuditEvent> AppendAuditAsync(AuditEvent auditEvent, CancellationToken cancellationToken = default);
}

/// <summary>
/// What may be read of the alias routes by anyone: the gateway's resolver reads them from a local
/// cache that <see cref="WatchAsync"/> keeps fresh, so a change made on any replica reaches every
/// gateway within a second.
/// </summary>
public interface IAliasReader
{
    Task<AliasRoute?> GetAsync(string alias, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<AliasRoute>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>Every route as it changes (first the current ones; a deleted alias arrives with no arms), until cancelled.</summary>
    IAsyncEnumerable<AliasRoute> WatchAsync(CancellationToken cancellationToken);
}

/// <summary>Alias routes (weighted A/B arms): what a client-facing name resolves to.</summary>
internal interface IAliasStore : IAliasReader
{
    /// <summary>
    /// Replaces an alias's arms (weights must be non-negative and sum to 1 within 1e-6). With
    /// <paramref name="expectedRevision"/>, fails with <see cref="StateConflictException"/> if the
    /// route changed since it was read. Audited by the caller through the registry.
    /// </summary>
    Task<AliasRoute> SetAsync(string alias, IReadOnlyList<AliasArm> arms, string actor, long? expectedRevision = null, string? baseModel = null,
        CancellationToken cancellationToken = default);

    Task<bool> DeleteAsync(string alias, string actor, CancellationToken cancellationToken = default);
}

/// <summary>
/// The alias edits of the gateway's API (<c>PUT</c> and <c>DELETE /admin/aliases</c>): with the
/// lifecycle stores, <see cref="LifecycleManager"/> (audited, like every lifecycle write); a gateway
/// without them edits the in-memory aliases it routes on.
/// </summary>
public interface IAliasEditor
{
    /// <summary>Replaces an alias's arms; their weights are relative (the stored ones sum to 1).</summary>
    Task<AliasRoute> SetAliasAsync(string alias, IReadOnlyList<AliasArm> arms, string? baseModel, string actor, CancellationToken cancellationToken = default);

    /// <summary>False when there was no such alias.</summary>
    Task<bool> DeleteAliasAsync(string alias, string actor, CancellationToken cancellationToken = default);
}

/// <summary>What may be read of the pipeline store by anyone.</summary>
public interface IPipelineReader
{
    Task<PipelineRecord?> GetAsync(string adapter, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<PipelineRecord>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>Small per-pipeline state the controller keeps between runs (cursors, last fire time, canary analysis state), by key.</summary>
    Task<JsonElement?> GetStateAsync(string adapter, string key, CancellationToken cancellationToken = default);
}

/// <summary>
/// The controller's own small state of each pipeline (cursors, last firing, drift history), which
/// its jobs keep between runs: bookkeeping, not lifecycle state, so it stays writable outside.
/// </summary>
public interface IPipelineStateStore : IPipelineReader
{
    /// <summary>Sets a key of an adapter's pipeline state (JSON null removes it).</summary>
    Task SetStateAsync(string adapter, string key, JsonElement value, CancellationToken cancellationToken = default);
}

/// <summary>Pipeline definitions, their paused flag, and revisions.</summary>
internal interface IPipelineStore : IPipelineStateStore
{
    Task<PipelineRecord> UpsertAsync(string adapter, JsonElement definition, string actor, long? expectedRevision = null, CancellationToken cancellationToken = default);

    Task<PipelineRecord> SetPausedAsync(string adapter, bool paused, string actor, CancellationToken cancellationToken = default);

    Task<bool> DeleteAsync(string adapter, string actor, CancellationToken cancellationToken = default);
}

/// <summary>What may be read of the approvals by anyone.</summary>
public interface IApprovalReader
{
    Task<Approval?> GetAsync(string id, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<Approval>> ListAsync(ApprovalStatus? status = ApprovalStatus.Pending, string? adapter = null, CancellationToken cancellationToken = default);
}

/// <summary>Pending promotions and rollbacks that wait for an operator.</summary>
internal interface IApprovalStore : IApprovalReader
{
    /// <summary>Creates a pending approval, or returns the pending one for the same adapter, version and action.</summary>
    Task<Approval> RequestAsync(string adapter, string version, ApprovalAction action, JsonElement? evidence, CancellationToken cancellationToken = default);

    /// <summary>Resolves a pending approval exactly once (a second resolve throws <see cref="StateConflictException"/>).</summary>
    Task<Approval> ResolveAsync(string id, bool approve, string actor, string? comment, CancellationToken cancellationToken = default);
}

/// <summary>What may be read of the running canaries by anyone.</summary>
public interface ICanaryReader
{
    /// <summary>The canary running for an adapter, or null.</summary>
    Task<CanaryState?> GetAsync(string adapter, CancellationToken cancellationToken = default);
}

/// <summary>
/// The canary of each adapter, compare-and-set on a revision like the other lifecycle stores. An
/// adapter's revision keeps counting across canaries, so a write against a canary that has ended
/// (or been replaced) since it was read fails instead of bringing it back.
/// </summary>
internal interface ICanaryStore : ICanaryReader
{
    /// <summary>
    /// Stores an adapter's canary under the next revision and returns it with that revision. With
    /// <paramref name="expectedRevision"/>, fails with <see cref="StateConflictException"/> unless
    /// the stored canary is at that revision (0: there is none).
    /// </summary>
    Task<CanaryState> PutAsync(string adapter, CanaryState state, long? expectedRevision = null, CancellationToken cancellationToken = default);

    /// <summary>Ends an adapter's canary; false when there was none. <paramref name="expectedRevision"/> as for <see cref="PutAsync"/>.</summary>
    Task<bool> ClearAsync(string adapter, long? expectedRevision = null, CancellationToken cancellationToken = default);
}

/// <summary>History of pipeline runs and their steps.</summary>
public interface IJobHistory
{
    /// <summary>Adds or updates the record of (RunId, Step).</summary>
    Task RecordAsync(JobRun run, CancellationToken cancellationToken = default);

    /// <summary>Newest first.</summary>
    Task<IReadOnlyList<JobRun>> ListAsync(string? adapter = null, int limit = 100, CancellationToken cancellationToken = default);
}

/// <summary>
/// Named leases with fencing tokens, so that with several controller replicas each scheduled
/// firing runs once, and a replica that lost its lease cannot act on stale authority.
/// </summary>
public interface ILeaseManager
{
    /// <summary>Grants the lease if free or expired (or already held by <paramref name="owner"/>); null if another owner holds it.</summary>
    Task<LeaseGrant?> TryAcquireAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>Extends a held lease; false if it was lost (expired and taken, or released).</summary>
    Task<bool> RenewAsync(LeaseGrant lease, TimeSpan ttl, CancellationToken cancellationToken = default);

    Task ReleaseAsync(LeaseGrant lease, CancellationToken cancellationToken = default);

    /// <summary>True while <paramref name="lease"/> is still the newest grant of its name (checks the fencing token).</summary>
    Task<bool> IsCurrentAsync(LeaseGrant lease, CancellationToken cancellationToken = default);

    /// <summary>
    /// Claims one firing of a schedule (e.g. "pipeline:support-bot:2026-11-23T10:00Z"): true for
    /// exactly one caller across replicas; remembered for <paramref name="retention"/>.
    /// </summary>
    Task<bool> TryClaimOnceAsync(string key, string owner, TimeSpan retention, CancellationToken cancellationToken = default);
}
