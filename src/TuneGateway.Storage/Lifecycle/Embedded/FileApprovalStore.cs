using System.Text.Json;

namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded approvals: pending once per (adapter, version, action), resolved once.</summary>
internal sealed class FileApprovalStore(LifecycleFile file) : IApprovalStore
{
    public Task<Approval> RequestAsync(string adapter, string version, ApprovalAction action, JsonElement? evidence, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var pending = file.State.Approvals.Values.FirstOrDefault(a => a.Status == ApprovalStatus.Pending && a.Adapter == adapter && a.Version == version && a.Action == action);
            if (pending is not null) return Task.FromResult(pending);
            var approval = new Approval
            {
                Id = Guid.NewGuid().ToString("N"), Adapter = adapter, Version = version, Action = action,
                Evidence = evidence?.Clone(), CreatedAt = file.Now,
            };
            file.State.Approvals[approval.Id] = approval;
            file.Save();
            return Task.FromResult(approval);
        }
    }

    Task<Approval?> IApprovalReader.GetAsync(string id, CancellationToken cancellationToken)
    {
        lock (file.Lock) return Task.FromResult(file.State.Approvals.GetValueOrDefault(id));
    }

    Task<IReadOnlyList<Approval>> IApprovalReader.ListAsync(ApprovalStatus? status, string? adapter, CancellationToken cancellationToken)
    {
        lock (file.Lock)
        {
            return Task.FromResult<IReadOnlyList<Approval>>(file.State.Approvals.Values
                .Where(a => (status is null || a.Status == status) && (adapter is null || a.Adapter == adapter))
                .OrderBy(a => a.CreatedAt).ToArray());
        }
    }

    public Task<Approval> ResolveAsync(string id, bool approve, string actor, string? comment, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var current = file.State.Approvals.GetValueOrDefault(id) ?? throw new KeyNotFoundException($"No approval '{id}'.");
            if (current.Status != ApprovalStatus.Pending)
                throw new StateConflictException($"Approval '{id}' was already {current.Status.ToString().ToLowerInvariant()} by {current.ResolvedBy}.");
            var resolved = current with
            {
                Status = approve ? ApprovalStatus.Approved : ApprovalStatus.Rejected, ResolvedBy = actor, ResolvedAt = file.Now, Comment = comment,
            };
            file.State.Approvals[id] = resolved;
            file.Save();
            return Task.FromResult(resolved);
        }
    }
}
