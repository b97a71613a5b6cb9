using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace TuneGateway.Storage.Lifecycle;

/// <summary>
/// The one writer of lifecycle state, for the pipelines, the operator API and the CLI: register,
/// evaluate and reject candidates, promote, roll back, start and end canaries, request and resolve
/// approvals, edit pipelines, audit. Each action moves registry states with compare-and-set (along
/// <see cref="VersionTransitions"/>), flips alias weights, and leaves an audit event naming the
/// actor and the reason. Everyone else gets the stores' read interfaces only
/// (<see cref="Registry"/>, <see cref="Aliases"/>, <see cref="Approvals"/>, <see cref="Pipelines"/>, <see cref="Canaries"/>);
/// the write interfaces and the stores are internal to this assembly, so nothing else can call a
/// store's write methods (and a test checks the sources as well).
/// </summary>
public sealed class LifecycleManager : IAliasEditor
{
    private readonly IAdapterRegistry _registry;
    private readonly IAliasStore _aliases;
    private readonly IPipelineStore _pipelines;
    private readonly IApprovalStore _approvals;
    private readonly ICanaryStore _canaries;
    private readonly ILogger<LifecycleManager> _logger;
    private readonly TimeProvider _time;

    /// <summary>Internal, like the write interfaces it takes: only this assembly (its DI registration) and the tests build one.</summary>
    internal LifecycleManager(IAdapterRegistry registry, IAliasStore aliases, IPipelineStore pipelines, IApprovalStore approvals,
        ICanaryStore canaries, ILogger<LifecycleManager> logger, TimeProvider? time = null)
    {
        (_registry, _aliases, _pipelines, _approvals, _canaries, _logger) = (registry, aliases, pipelines, approvals, canaries, logger);
        _time = time ?? TimeProvider.System;
    }

    public IAdapterRegistryReader Registry => _registry;
    public IAliasReader Aliases => _aliases;
    public IApprovalReader Approvals => _approvals;
    public IPipelineReader Pipelines => _pipelines;
    public ICanaryReader Canaries => _canaries;

    /// <summary>Next version name of an adapter ("v3"), allocated atomically across replicas.</summary>
    public Task<string> AllocateVersionAsync(string adapter, CancellationToken cancellationToken = default) =>
        _registry.AllocateVersionAsync(adapter, cancellationToken);

    /// <summary>Registers a version as a candidate (audited).</summary>
    public Task<RegisteredVersion> RegisterCandidateAsync(RegisteredVersion version, string actor, string reason, CancellationToken cancellationToken = default) =>
        _registry.RegisterAsync(version with { State = VersionState.Candidate }, actor, reason, cancellationToken);

    /// <summary>Attaches the offline evaluation to a version (audited).</summary>
    public Task<RegisteredVersion> RecordEvaluationAsync(string adapter, string version, JsonElement evaluation, string actor, CancellationToken cancellationToken = default) =>
        _registry.SetEvaluationAsync(adapter, version, evaluation, actor, cancellationToken);

    /// <summary>A candidate that failed a step or the gate: rejected for good, production untouched.</summary>
    public Task<RegisteredVersion> RejectAsync(string adapter, string version, string actor, string reason, CancellationToken cancellationToken = default) =>
        _registry.TransitionAsync(adapter, version, VersionState.Rejected, actor, reason, [VersionState.Candidate], cancellationToken: cancellationToken);

    /// <summary>Asks an operator to approve <paramref name="action"/> of a version (the pending one when already asked); audited.</summary>
    public async Task<Approval> RequestApprovalAsync(string adapter, string version, ApprovalAction action, JsonElement? evidence, string actor, string reason,
        CancellationToken cancellationToken = default)
    {
        var approval = await _approvals.RequestAsync(adapter, version, action, evidence, cancellationToken).ConfigureAwait(false);
        await _registry.AppendAuditAsync(new AuditEvent { Actor = actor, Action = "approval.request", Adapter = adapter, Version = version, To = "pending", Reason = reason },
            cancellationToken).ConfigureAwait(false);
        return approval;
    }

    /// <summary>An audit event for an action that changes no version (a run requested, a pipeline edited elsewhere).</summary>
    public Task<AuditEvent> AuditAsync(AuditEvent auditEvent, CancellationToken cancellationToken = default) => _registry.AppendAuditAsync(auditEvent, cancellationToken);

    /// <summary>Creates or replaces a pipeline definition (audited).</summary>
    public async Task<PipelineRecord> PutPipelineAsync(string adapter, JsonElement definition, string actor, string? reason = null, CancellationToken cancellationToken = default)
    {
        var record = await _pipelines.UpsertAsync(adapter, definition, actor, cancellationToken: cancellationToken).ConfigureAwait(false);
        await _registry.AppendAuditAsync(new AuditEvent { Actor = actor, Action = "pipeline.update", Adapter = adapter, To = $"revision {record.Revision}", Reason = reason },
            cancellationToken).ConfigureAwait(false);
        return record;
    }

    /// <summary>Deletes a pipeline (audited); false when there was none.</summary>
    public async Task<bool> DeletePipelineAsync(string adapter, string actor, CancellationToken cancellationToken = default)
    {
        if (!await _pipelines.DeleteAsync(adapter, actor, cancellationToken).ConfigureAwait(false)) return false;
        await _registry.AppendAuditAsync(new AuditEvent { Actor = actor, Action = "pipeline.delete", Adapter = adapter }, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>Pauses or resumes a pipeline's schedule and triggers (audited).</summary>
    public async Task<PipelineRecord> SetPipelinePausedAsync(string adapter, bool paused, string actor, CancellationToken cancellationToken = default)
    {
        var record = await _pipelines.SetPausedAsync(adapter, paused, actor, cancellationToken).ConfigureAwait(false);
        await _registry.AppendAuditAsync(new AuditEvent { Actor = actor, Action = paused ? "pipeline.pause" : "pipeline.resume", Adapter = adapter }, cancellationToken).ConfigureAwait(false);
        return record;
    }

    /// <summary>Asks the controller (any replica) to run a pipeline now; audited.</summary>
    public async Task RequestRunAsync(string adapter, string actor, CancellationToken cancellationToken = default)
    {
        await _pipelines.SetStateAsync(adapter, PipelineRunRequest.StateKey,
            JsonSerializer.SerializeToElement(new PipelineRunRequest(Guid.NewGuid().ToString("N"), actor, _time.GetUtcNow())), cancellationToken).ConfigureAwait(false);
        await _registry.AppendAuditAsync(new AuditEvent { Actor = actor, Action = "pipeline.run", Adapter = adapter, Reason = "run now" }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The controller's own small state of a pipeline (drift history, reference profiles, cursors).</summary>
    public Task SavePipelineStateAsync(string adapter, string key, JsonElement value, CancellationToken cancellationToken = default) =>
        _pipelines.SetStateAsync(adapter, key, value, cancellationToken);

    public async Task<RegisteredVersion?> ProductionAsync(string adapter, CancellationToken cancellationToken = default) =>
        (await _registry.ListVersionsAsync(adapter, cancellationToken).ConfigureAwait(false)).LastOrDefault(v => v.State == VersionState.Production);

    public Task<CanaryState?> CanaryAsync(string adapter, CancellationToken cancellationToken = default) => _canaries.GetAsync(adapter, cancellationToken);

    /// <summary>
    /// The canary monitor's record of a check (the analysis, the last verdict, the approval it asked
    /// for), compared-and-set on the revision <paramref name="state"/> was read at: a canary that a
    /// promotion or rollback ended meanwhile is not brought back (<see cref="StateConflictException"/>).
    /// </summary>
    public Task<CanaryState> SaveCanaryAsync(string adapter, CanaryState state, CancellationToken cancellationToken) =>
        _canaries.PutAsync(adapter, state, state.Revision, cancellationToken);

    /// <summary>Makes <paramref name="version"/> serve the whole alias; the previous production version is retired.</summary>
    public async Task<RegisteredVersion> PromoteAsync(string adapter, string version, string actor, string reason, CancellationToken cancellationToken = default)
    {
        var target = await _registry.GetAsync(adapter, version, cancellationToken).ConfigureAwait(false)
            ?? throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
        if (target.State is VersionState.Production) return target;
        var previous = await ProductionAsync(adapter, cancellationToken).ConfigureAwait(false);

        // Routing first: once the alias points at the new version, states follow.
        await SetRouteAsync(adapter, [new AliasArm(target.ModelName, 1.0, "production")], actor, reason, cancellationToken).ConfigureAwait(false);
        var promoted = await _registry.TransitionAsync(adapter, version, VersionState.Production, actor, reason,
            [VersionState.Candidate, VersionState.Canary, VersionState.Retired, VersionState.RolledBack], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (previous is not null && previous.Version != version)
            await _registry.TransitionAsync(adapter, previous.Version, VersionState.Retired, actor, $"replaced by {version}: {reason}", [VersionState.Production], cancellationToken: cancellationToken).ConfigureAwait(false);

        var canary = await CanaryAsync(adapter, cancellationToken).ConfigureAwait(false);
        if (canary is not null)
        {
            if (canary.Candidate != version)
                await TryTransitionAsync(adapter, canary.Candidate, VersionState.Rejected, actor, $"canary ended: {version} was promoted", cancellationToken).ConfigureAwait(false);
            await _canaries.ClearAsync(adapter, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        await ExpirePendingApprovalsAsync(adapter, actor, cancellationToken).ConfigureAwait(false);
        _logger.LogInformation("{Adapter}@{Version} promoted to production by {Actor}: {Reason}", adapter, version, actor, reason);
        return promoted;
    }

    /// <summary>
    /// During a canary: all traffic back to the control version, the candidate marked rolled back.
    /// Otherwise: production rolled back to <paramref name="toVersion"/> (default: the most recent
    /// retired version).
    /// </summary>
    public async Task<RegisteredVersion> RollbackAsync(string adapter, string? toVersion, string actor, string reason, CancellationToken cancellationToken = default)
    {
        var canary = await CanaryAsync(adapter, cancellationToken).ConfigureAwait(false);
        if (canary is not null && (toVersion is null || toVersion == canary.Control))
        {
            var control = await _registry.GetAsync(adapter, canary.Control, cancellationToken).ConfigureAwait(false)
                ?? throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{canary.Control}'.");
            await SetRouteAsync(adapter, [new AliasArm(control.ModelName, 1.0, "production")], actor, reason, cancellationToken).ConfigureAwait(false);
            await TryTransitionAsync(adapter, canary.Candidate, VersionState.RolledBack, actor, reason, cancellationToken).ConfigureAwait(false);
            await _canaries.ClearAsync(adapter, cancellationToken: cancellationToken).ConfigureAwait(false);
            await ExpirePendingApprovalsAsync(adapter, actor, cancellationToken).ConfigureAwait(false);
            _logger.LogWarning("{Adapter}: canary of {Candidate} rolled back to {Control} by {Actor}: {Reason}", adapter, canary.Candidate, canary.Control, actor, reason);
            return control;
        }

        var versions = await _registry.ListVersionsAsync(adapter, cancellationToken).ConfigureAwait(false);
        var current = versions.LastOrDefault(v => v.State == VersionState.Production);
        var target = toVersion is not null
            ? versions.FirstOrDefault(v => v.Version == toVersion) ?? throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{toVersion}'.")
            : versions.Where(v => v.State == VersionState.Retired).MaxBy(v => v.UpdatedAt)
              ?? throw new InvalidOperationException($"Adapter '{adapter}' has no retired version to roll back to; name one.");
        if (current is not null && current.Version == target.Version) return current;

        await SetRouteAsync(adapter, [new AliasArm(target.ModelName, 1.0, "production")], actor, reason, cancellationToken).ConfigureAwait(false);
        var restored = await _registry.TransitionAsync(adapter, target.Version, VersionState.Production, actor, reason, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (current is not null)
            await _registry.TransitionAsync(adapter, current.Version, VersionState.RolledBack, actor, reason, [VersionState.Production], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (canary is not null)
        {
            await TryTransitionAsync(adapter, canary.Candidate, VersionState.RolledBack, actor, reason, cancellationToken).ConfigureAwait(false);
            await _canaries.ClearAsync(adapter, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        _logger.LogWarning("{Adapter}: rolled back to {Version} by {Actor}: {Reason}", adapter, target.Version, actor, reason);
        return restored;
    }

    /// <summary>Sends <paramref name="share"/> of the alias's traffic to the candidate, the rest to production.</summary>
    public async Task<CanaryState> StartCanaryAsync(string adapter, string candidate, double share, string? runId, string actor, CancellationToken cancellationToken = default)
    {
        if (share is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(share), "The canary share must be in (0, 1).");
        if (await CanaryAsync(adapter, cancellationToken).ConfigureAwait(false) is { } running)
            throw new InvalidOperationException($"Adapter '{adapter}' already has {running.Candidate} in canary.");
        var production = await ProductionAsync(adapter, cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException($"Adapter '{adapter}' has no production version to compare against; promote one first.");
        var version = await _registry.GetAsync(adapter, candidate, cancellationToken).ConfigureAwait(false)
            ?? throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{candidate}'.");

        await _registry.TransitionAsync(adapter, candidate, VersionState.Canary, actor, $"canary at {share:P0} of traffic", [VersionState.Candidate], cancellationToken: cancellationToken).ConfigureAwait(false);
        // Expecting none: of two starts racing past the check above, one stores its canary.
        var state = await _canaries.PutAsync(adapter, new CanaryState { Candidate = candidate, Control = production.Version, Share = share, StartedAt = _time.GetUtcNow(), RunId = runId },
            expectedRevision: 0, cancellationToken).ConfigureAwait(false);
        await SetRouteAsync(adapter, [new AliasArm(production.ModelName, 1 - share, "control"), new AliasArm(version.ModelName, share, "candidate")],
            actor, $"canary of {candidate}", cancellationToken).ConfigureAwait(false);
        _logger.LogInformation("{Adapter}: canary of {Candidate} at {Share:P0} against {Control}", adapter, candidate, share, production.Version);
        return state;
    }

    /// <summary>Approves (promotes) or rejects (rolls back) a pending approval.</summary>
    public async Task<Approval> ResolveApprovalAsync(string id, bool approve, string actor, string? comment, CancellationToken cancellationToken = default)
    {
        var approval = await _approvals.ResolveAsync(id, approve, actor, comment, cancellationToken).ConfigureAwait(false);
        string reason = $"{(approve ? "approved" : "rejected")} by {actor}" + (string.IsNullOrWhiteSpace(comment) ? "" : $": {comment}");
        await _registry.AppendAuditAsync(new AuditEvent
        {
            Actor = actor, Action = "approval.resolve", Adapter = approval.Adapter, Version = approval.Version,
            To = approve ? "approved" : "rejected", Reason = comment,
        }, cancellationToken).ConfigureAwait(false);
        bool promote = approval.Action == ApprovalAction.Promote;
        if (approve == promote) await PromoteAsync(approval.Adapter, approval.Version, actor, reason, cancellationToken).ConfigureAwait(false);
        else await RollbackAsync(approval.Adapter, null, actor, reason, cancellationToken).ConfigureAwait(false);
        return approval;
    }

    /// <summary>
    /// An operator's alias (<c>PUT /admin/aliases</c>): <paramref name="arms"/> and
    /// <paramref name="baseModel"/> replace the alias's, the weights relative (scaled here to sum to 1); audited.
    /// </summary>
    public async Task<AliasRoute> SetAliasAsync(string alias, IReadOnlyList<AliasArm> arms, string? baseModel, string actor, CancellationToken cancellationToken = default)
    {
        var before = await _aliases.GetAsync(alias, cancellationToken).ConfigureAwait(false);
        return await WriteRouteAsync(alias, before, LifecycleRules.Normalised(arms), baseModel, actor, "set through the alias API", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes an alias (<c>DELETE /admin/aliases</c>); audited; false when there was none.</summary>
    public async Task<bool> DeleteAliasAsync(string alias, string actor, CancellationToken cancellationToken = default)
    {
        if (!await _aliases.DeleteAsync(alias, actor, cancellationToken).ConfigureAwait(false)) return false;
        await _registry.AppendAuditAsync(new AuditEvent { Actor = actor, Action = "alias.delete", Adapter = alias }, cancellationToken).ConfigureAwait(false);
        return true;
    }

    private async Task SetRouteAsync(string adapter, IReadOnlyList<AliasArm> arms, string actor, string reason, CancellationToken cancellationToken)
    {
        // A promotion, canary or rollback changes the versions, not the base model an operator gave the alias.
        var before = await _aliases.GetAsync(adapter, cancellationToken).ConfigureAwait(false);
        await WriteRouteAsync(adapter, before, arms, before?.BaseModel, actor, reason, cancellationToken).ConfigureAwait(false);
    }

    private async Task<AliasRoute> WriteRouteAsync(string adapter, AliasRoute? before, IReadOnlyList<AliasArm> arms, string? baseModel, string actor, string reason,
        CancellationToken cancellationToken)
    {
        var route = await _aliases.SetAsync(adapter, arms, actor, baseModel: baseModel, cancellationToken: cancellationToken).ConfigureAwait(false);
        await _registry.AppendAuditAsync(new AuditEvent
        {
            Actor = actor, Action = "alias.set", Adapter = adapter,
            From = before is null ? null : Describe(before.Arms), To = Describe(arms), Reason = reason,
        }, cancellationToken).ConfigureAwait(false);
        return route;
    }

    private static string Describe(IReadOnlyList<AliasArm> arms) => string.Join(", ", arms.Select(a => $"{a.Model} {a.Weight:P0} ({a.Arm})"));

    private async Task TryTransitionAsync(string adapter, string version, VersionState to, string actor, string reason, CancellationToken cancellationToken)
    {
        try
        {
            await _registry.TransitionAsync(adapter, version, to, actor, reason, [VersionState.Candidate, VersionState.Canary], cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (StateConflictException ex)
        {
            _logger.LogInformation("{Adapter}@{Version} not moved to {State}: {Message}", adapter, version, to, ex.Message);
        }
    }

    private async Task ExpirePendingApprovalsAsync(string adapter, string actor, CancellationToken cancellationToken)
    {
        foreach (var pending in await _approvals.ListAsync(ApprovalStatus.Pending, adapter, cancellationToken).ConfigureAwait(false))
        {
            try { await _approvals.ResolveAsync(pending.Id, false, actor, "superseded", cancellationToken).ConfigureAwait(false); }
            catch (StateConflictException) { }
        }
    }
}
