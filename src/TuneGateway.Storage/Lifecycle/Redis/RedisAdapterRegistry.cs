using System.Text.Json;
using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>
/// The registry in Redis: versions (record and state kept apart, so that a transition's script
/// compares and sets a small value), counters, and the audit stream every change appends to in
/// the same script.
/// </summary>
internal sealed class RedisAdapterRegistry(RedisLifecycleContext redis) : IAdapterRegistry
{
    public async Task<string> AllocateVersionAsync(string adapter, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        long next = await redis.Db.StringIncrementAsync(redis.Key($"reg:counter:{adapter}")).ConfigureAwait(false);
        return $"v{next}";
    }

    // Registers a version unless it exists, and appends the audit event, atomically.
    private const string RegisterScript = """
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
        redis.call('SADD', KEYS[2], ARGV[3])
        local seq = redis.call('INCR', KEYS[3])
        local event = string.gsub(ARGV[4], '"sequence":0', '"sequence":' .. seq, 1)
        redis.call('XADD', KEYS[4], seq .. '-1', 'adapter', ARGV[3], 'json', event)
        return seq
        """;

    /// <summary>The part of a version that transitions change.</summary>
    private sealed record StateRecord(VersionState State, string? Reason, DateTimeOffset UpdatedAt);

    public async Task<RegisteredVersion> RegisterAsync(RegisteredVersion version, string actor, string reason, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(version.Adapter, "adapter");
        LifecycleRules.ValidateName(version.Version, "version");
        var now = redis.Now;
        var stored = version with { CreatedAt = now, UpdatedAt = now };
        var audit = new AuditEvent { Actor = actor, Action = "register", Adapter = version.Adapter, Version = version.Version, To = LifecycleJson.Name(stored.State), Reason = reason, At = now };
        var result = await redis.Db.ScriptEvaluateAsync(RegisterScript,
            [redis.Key($"reg:versions:{version.Adapter}"), redis.Key("reg:adapters"), redis.Key("audit:seq"), redis.Key("audit"), redis.Key($"reg:states:{version.Adapter}")],
            [version.Version, LifecycleJson.Serialize(stored), version.Adapter, LifecycleJson.Serialize(audit),
             LifecycleJson.Serialize(new StateRecord(stored.State, stored.StateReason, now))]).ConfigureAwait(false);
        if ((long)result == 0) throw new StateConflictException($"{version.Adapter}@{version.Version} is already registered.");
        return stored;
    }

    public async Task<RegisteredVersion?> GetAsync(string adapter, string version, CancellationToken cancellationToken = default)
    {
        var record = redis.Db.HashGetAsync(redis.Key($"reg:versions:{adapter}"), version);
        var state = redis.Db.HashGetAsync(redis.Key($"reg:states:{adapter}"), version);
        await Task.WhenAll(record, state).ConfigureAwait(false);
        return record.Result.IsNull ? null : Merge(record.Result!, state.Result);
    }

    public async Task<IReadOnlyList<RegisteredVersion>> ListVersionsAsync(string adapter, CancellationToken cancellationToken = default)
    {
        var records = redis.Db.HashGetAllAsync(redis.Key($"reg:versions:{adapter}"));
        var states = redis.Db.HashGetAllAsync(redis.Key($"reg:states:{adapter}"));
        await Task.WhenAll(records, states).ConfigureAwait(false);
        var byVersion = states.Result.ToDictionary(e => e.Name.ToString(), e => e.Value);
        return records.Result.Select(e => Merge(e.Value!, byVersion.GetValueOrDefault(e.Name.ToString())))
            .OrderBy(v => v.CreatedAt).ThenBy(v => LifecycleRules.VersionNumber(v.Version)).ToArray();
    }

    private static RegisteredVersion Merge(string record, RedisValue state)
    {
        var version = LifecycleJson.Deserialize<RegisteredVersion>(record);
        if (state.IsNull) return version;
        var s = LifecycleJson.Deserialize<StateRecord>(state!);
        return version with { State = s.State, StateReason = s.Reason, UpdatedAt = s.UpdatedAt > version.UpdatedAt ? s.UpdatedAt : version.UpdatedAt };
    }

    public async Task<IReadOnlyList<string>> ListAdaptersAsync(CancellationToken cancellationToken = default)
    {
        var members = await redis.Db.SetMembersAsync(redis.Key("reg:adapters")).ConfigureAwait(false);
        return members.Select(m => m.ToString()).Order(StringComparer.Ordinal).ToArray();
    }

    // Compare-and-set of a version's state: KEYS[1] the states hash; ARGV[2] a JSON array of
    // allowed state names (VersionTransitions.Allowed: never empty-for-any); ARGV[3] the new state record; ARGV[4] the audit event with
    // "sequence":0 and "from":"__FROM__" placeholders, filled in here.
    private const string TransitionScript = """
        local raw = redis.call('HGET', KEYS[1], ARGV[1])
        if not raw then return redis.error_reply('NOTFOUND') end
        local from = cjson.decode(raw)['state']
        if ARGV[2] ~= '' then
          local ok = false
          for _, s in ipairs(cjson.decode(ARGV[2])) do if from == s then ok = true end end
          if not ok then return redis.error_reply('CONFLICT ' .. from) end
        end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
        local seq = redis.call('INCR', KEYS[2])
        local event = string.gsub(ARGV[4], '"sequence":0', '"sequence":' .. seq, 1)
        event = string.gsub(event, '"from":"__FROM__"', '"from":"' .. from .. '"', 1)
        redis.call('XADD', KEYS[3], seq .. '-1', 'adapter', ARGV[5], 'json', event)
        return from
        """;

    public async Task<RegisteredVersion> TransitionAsync(string adapter, string version, VersionState to, string actor, string reason,
        IReadOnlyCollection<VersionState>? expectedFrom = null, JsonElement? details = null, CancellationToken cancellationToken = default)
    {
        var now = redis.Now;
        // The script compares-and-sets against this list: the table's legal sources, narrowed to the caller's.
        var allowed = VersionTransitions.Allowed(to, expectedFrom);
        var audit = new AuditEvent { Actor = actor, Action = "transition", Adapter = adapter, Version = version, From = "__FROM__", To = LifecycleJson.Name(to), Reason = reason, Details = details, At = now };
        try
        {
            await redis.Db.ScriptEvaluateAsync(TransitionScript,
                [redis.Key($"reg:states:{adapter}"), redis.Key("audit:seq"), redis.Key("audit")],
                [version, JsonSerializer.Serialize(allowed.Select(LifecycleJson.Name)),
                 LifecycleJson.Serialize(new StateRecord(to, reason, now)), LifecycleJson.Serialize(audit), adapter]).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("NOTFOUND", StringComparison.Ordinal))
        {
            throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
        }
        catch (RedisServerException ex) when (ex.Message.Contains("CONFLICT", StringComparison.Ordinal))
        {
            string state = ex.Message[(ex.Message.IndexOf("CONFLICT", StringComparison.Ordinal) + 9)..].Trim();
            bool legal = Enum.TryParse<VersionState>(state.Replace("_", "", StringComparison.Ordinal), ignoreCase: true, out var from) && VersionTransitions.IsLegal(from, to);
            throw new StateConflictException($"{adapter}@{version} is {state}, not {LifecycleRules.DescribeStates(allowed)}" +
                (legal ? "." : $"; a version never moves from {state} to {LifecycleJson.Name(to)}."));
        }
        return await GetAsync(adapter, version, cancellationToken).ConfigureAwait(false)
            ?? throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
    }

    public async Task<RegisteredVersion> SetEvaluationAsync(string adapter, string version, JsonElement evaluation, string actor, CancellationToken cancellationToken = default)
    {
        // Read-modify-write of a field the state machine never touches: a concurrent transition
        // between the read and the write would be lost, so retry on a changed record (WATCH-free CAS).
        for (int attempt = 0; ; attempt++)
        {
            var raw = await redis.Db.HashGetAsync(redis.Key($"reg:versions:{adapter}"), version).ConfigureAwait(false);
            if (raw.IsNull) throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            var updated = LifecycleJson.Deserialize<RegisteredVersion>(raw!) with { Evaluation = evaluation.Clone(), UpdatedAt = redis.Now };
            var transaction = redis.Db.CreateTransaction();
            transaction.AddCondition(Condition.HashEqual(redis.Key($"reg:versions:{adapter}"), version, raw));
            _ = transaction.HashSetAsync(redis.Key($"reg:versions:{adapter}"), version, LifecycleJson.Serialize(updated));
            if (await transaction.ExecuteAsync().ConfigureAwait(false))
            {
                await AppendAuditAsync(new AuditEvent { Actor = actor, Action = "evaluation", Adapter = adapter, Version = version, Details = evaluation.Clone() }, cancellationToken).ConfigureAwait(false);
                return await GetAsync(adapter, version, cancellationToken).ConfigureAwait(false) ?? updated;
            }
            if (attempt >= 10) throw new StateConflictException($"{adapter}@{version} kept changing while its evaluation was saved.");
        }
    }

    private const string AuditScript = """
        local seq = redis.call('INCR', KEYS[1])
        local event = string.gsub(ARGV[1], '"sequence":0', '"sequence":' .. seq, 1)
        redis.call('XADD', KEYS[2], seq .. '-1', 'adapter', ARGV[2], 'json', event)
        return seq
        """;

    public async Task<AuditEvent> AppendAuditAsync(AuditEvent auditEvent, CancellationToken cancellationToken = default)
    {
        var stored = auditEvent with { Sequence = 0, At = auditEvent.At == default ? redis.Now : auditEvent.At };
        long sequence = (long)await redis.Db.ScriptEvaluateAsync(AuditScript, [redis.Key("audit:seq"), redis.Key("audit")], [LifecycleJson.Serialize(stored), stored.Adapter]).ConfigureAwait(false);
        return stored with { Sequence = sequence };
    }

    public async Task<IReadOnlyList<AuditEvent>> GetAuditAsync(string? adapter = null, long afterSequence = 0, int limit = 100, CancellationToken cancellationToken = default)
    {
        limit = Math.Clamp(limit, 1, 10_000);
        var result = new List<AuditEvent>();
        RedisValue start = $"{afterSequence}-2";
        while (result.Count < limit)
        {
            var entries = await redis.Db.StreamRangeAsync(redis.Key("audit"), start, "+", count: 500).ConfigureAwait(false);
            if (entries.Length == 0) break;
            foreach (var entry in entries)
            {
                if (adapter is not null && entry["adapter"] != adapter) continue;
                result.Add(LifecycleJson.Deserialize<AuditEvent>(entry["json"]!));
                if (result.Count == limit) break;
            }
            string last = entries[^1].Id!;
            start = "(" + last;
        }
        return result;
    }
}
