using System.Text.Json;
using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>Approvals in Redis: pending once per (adapter, version, action), resolved once, by script.</summary>
internal sealed class RedisApprovalStore(RedisLifecycleContext redis) : IApprovalStore
{
    /// <summary>The part of an approval that resolving changes.</summary>
    private sealed record ApprovalStatusRecord(ApprovalStatus Status, string? ResolvedBy, DateTimeOffset? ResolvedAt, string? Comment);

    // KEYS[1] the pending index for (adapter, version, action), KEYS[2] the time index. ARGV[1] id,
    // ARGV[2] approval JSON, ARGV[3] "{p}:approval:", ARGV[4] time score, ARGV[5] initial status JSON,
    // ARGV[6] "{p}:approval-status:". An approval already pending for the same action is returned instead.
    private const string RequestApprovalScript = """
        local existing = redis.call('GET', KEYS[1])
        if existing then
          local status = redis.call('GET', ARGV[6] .. existing)
          if status and cjson.decode(status)['status'] == 'pending' then return existing end
        end
        redis.call('SET', KEYS[1], ARGV[1])
        redis.call('SET', ARGV[3] .. ARGV[1], ARGV[2])
        redis.call('SET', ARGV[6] .. ARGV[1], ARGV[5])
        redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
        return ARGV[1]
        """;

    public async Task<Approval> RequestAsync(string adapter, string version, ApprovalAction action, JsonElement? evidence, CancellationToken cancellationToken = default)
    {
        var now = redis.Now;
        var approval = new Approval { Id = Guid.NewGuid().ToString("N"), Adapter = adapter, Version = version, Action = action, Evidence = evidence?.Clone(), CreatedAt = now };
        var id = await redis.Db.ScriptEvaluateAsync(RequestApprovalScript, [redis.Key($"approval-pending:{adapter}:{version}:{LifecycleJson.Name(action)}"), redis.Key("approvals")],
            [approval.Id, LifecycleJson.Serialize(approval), $"{redis.Prefix}:approval:", now.ToUnixTimeMilliseconds(),
             LifecycleJson.Serialize(new ApprovalStatusRecord(ApprovalStatus.Pending, null, null, null)), $"{redis.Prefix}:approval-status:"]).ConfigureAwait(false);
        return await ((IApprovalStore)this).GetAsync(id.ToString()!, cancellationToken).ConfigureAwait(false) ?? approval;
    }

    async Task<Approval?> IApprovalReader.GetAsync(string id, CancellationToken cancellationToken)
    {
        var values = await redis.Db.StringGetAsync([redis.Key($"approval:{id}"), redis.Key($"approval-status:{id}")]).ConfigureAwait(false);
        return values[0].IsNull ? null : MergeApproval(values[0]!, values[1]);
    }

    private static Approval MergeApproval(string approval, RedisValue status)
    {
        var a = LifecycleJson.Deserialize<Approval>(approval);
        if (status.IsNull) return a;
        var s = LifecycleJson.Deserialize<ApprovalStatusRecord>(status!);
        return a with { Status = s.Status, ResolvedBy = s.ResolvedBy, ResolvedAt = s.ResolvedAt, Comment = s.Comment };
    }

    async Task<IReadOnlyList<Approval>> IApprovalReader.ListAsync(ApprovalStatus? status, string? adapter, CancellationToken cancellationToken)
    {
        var ids = await redis.Db.SortedSetRangeByRankAsync(redis.Key("approvals"), -2000, -1).ConfigureAwait(false);
        if (ids.Length == 0) return [];
        var approvals = await redis.Db.StringGetAsync(ids.Select(id => redis.Key($"approval:{id}")).ToArray()).ConfigureAwait(false);
        var statuses = await redis.Db.StringGetAsync(ids.Select(id => redis.Key($"approval-status:{id}")).ToArray()).ConfigureAwait(false);
        return approvals.Select((a, i) => a.IsNull ? null : MergeApproval(a!, statuses[i])).OfType<Approval>()
            .Where(a => (status is null || a.Status == status) && (adapter is null || a.Adapter == adapter)).ToArray();
    }

    // KEYS[1] status of the approval, KEYS[2] the approval; ARGV[1] the resolved status JSON,
    // ARGV[2] the pending-index prefix. Resolves once.
    private const string ResolveScript = """
        local raw = redis.call('GET', KEYS[1])
        if not raw then return redis.error_reply('NOTFOUND') end
        local s = cjson.decode(raw)
        if s['status'] ~= 'pending' then return redis.error_reply('CONFLICT ' .. s['status'] .. ' ' .. tostring(s['resolved_by'])) end
        redis.call('SET', KEYS[1], ARGV[1])
        return 1
        """;

    public async Task<Approval> ResolveAsync(string id, bool approve, string actor, string? comment, CancellationToken cancellationToken = default)
    {
        var resolved = new ApprovalStatusRecord(approve ? ApprovalStatus.Approved : ApprovalStatus.Rejected, actor, redis.Now, comment);
        try
        {
            await redis.Db.ScriptEvaluateAsync(ResolveScript, [redis.Key($"approval-status:{id}"), redis.Key($"approval:{id}")], [LifecycleJson.Serialize(resolved), $"{redis.Prefix}:approval-pending:"]).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("NOTFOUND", StringComparison.Ordinal))
        {
            throw new KeyNotFoundException($"No approval '{id}'.");
        }
        catch (RedisServerException ex) when (ex.Message.Contains("CONFLICT", StringComparison.Ordinal))
        {
            var parts = ex.Message[(ex.Message.IndexOf("CONFLICT", StringComparison.Ordinal) + 9)..].Split(' ');
            throw new StateConflictException($"Approval '{id}' was already {parts[0]} by {parts.ElementAtOrDefault(1)}.");
        }
        var approval = await ((IApprovalStore)this).GetAsync(id, cancellationToken).ConfigureAwait(false) ?? throw new KeyNotFoundException($"No approval '{id}'.");
        await redis.Db.KeyDeleteAsync(redis.Key($"approval-pending:{approval.Adapter}:{approval.Version}:{LifecycleJson.Name(approval.Action)}")).ConfigureAwait(false);
        return approval;
    }
}
