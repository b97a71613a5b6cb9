using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>
/// The lifecycle stores in Redis, shared by every gateway and controller replica. Each operation
/// that must be atomic (version allocation, compare-and-set transitions with their audit event,
/// alias revisions, resolve-once approvals, leases with fencing tokens) is one command or one Lua
/// script. Keys, under a prefix (default <c>tunegw</c>):
/// <list type="bullet">
/// <item><c>{p}:reg:adapters</c> set of names; <c>{p}:reg:versions:{adapter}</c> hash version → record JSON;
/// <c>{p}:reg:states:{adapter}</c> hash version → {state, reason, time} (the part transitions change); <c>{p}:reg:counter:{adapter}</c> INCR counter.</item>
/// <item><c>{p}:audit</c> stream of every event, entry id <c>{sequence}-1</c>, sequence from <c>{p}:audit:seq</c>.</item>
/// <item><c>{p}:alias:{name}</c> JSON, <c>{p}:alias-rev:{name}</c> its revision; <c>{p}:aliases</c> set; changes published on <c>{p}:alias-changes</c>.</item>
/// <item><c>{p}:pipeline:{adapter}</c> definition JSON, <c>{p}:pipeline-meta:{adapter}</c> {revision, paused, ...}; <c>{p}:pipelines</c> set; <c>{p}:pipeline-state:{adapter}</c> hash key → JSON.</item>
/// <item><c>{p}:approval:{id}</c> JSON, <c>{p}:approval-status:{id}</c> {status, resolved_by, ...}; <c>{p}:approvals</c> sorted set by time; <c>{p}:approval-pending:{adapter}:{version}:{action}</c> → id.</item>
/// <item><c>{p}:canary:{adapter}</c> JSON, <c>{p}:canary-rev:{adapter}</c> the adapter's last canary revision (kept when the canary ends).</item>
/// <item><c>{p}:jobs</c> hash "{run}|{step}" → JSON; <c>{p}:jobs-by-time</c> sorted set (capped).</item>
/// <item><c>{p}:lease:{name}</c> "owner|token" with a TTL; <c>{p}:lease-token:{name}</c> counter; <c>{p}:claim:{key}</c> SET NX EX.</item>
/// </list>
/// Scripts never decode and re-encode the large JSON documents (Lua's cjson would turn empty arrays
/// into objects and round numbers): what a script compares lives in small separate values.
/// Scripts touch several keys, so this targets a single Redis node (with replicas), not Redis Cluster.
/// </summary>
internal sealed class RedisLifecycleStore(IConnectionMultiplexer redis, string prefix = "tunegw", TimeProvider? time = null)
    : IAdapterRegistry, IAliasStore, IPipelineStore, IApprovalStore, ICanaryStore, IJobHistory, ILeaseManager
{
    private const int JobHistoryLimit = 20_000;
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private IDatabase Db => redis.GetDatabase();
    private RedisKey Key(string suffix) => $"{prefix}:{suffix}";
    private RedisChannel AliasChannel => RedisChannel.Literal($"{prefix}:alias-changes");

    // ---------------------------------------------------------------- registry

    public async Task<string> AllocateVersionAsync(string adapter, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        long next = await Db.StringIncrementAsync(Key($"reg:counter:{adapter}")).ConfigureAwait(false);
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
        var now = _time.GetUtcNow();
        var stored = version with { CreatedAt = now, UpdatedAt = now };
        var audit = new AuditEvent { Actor = actor, Action = "register", Adapter = version.Adapter, Version = version.Version, To = Name(stored.State), Reason = reason, At = now };
        var result = await Db.ScriptEvaluateAsync(RegisterScript,
            [Key($"reg:versions:{version.Adapter}"), Key("reg:adapters"), Key("audit:seq"), Key("audit"), Key($"reg:states:{version.Adapter}")],
            [version.Version, LifecycleJson.Serialize(stored), version.Adapter, LifecycleJson.Serialize(audit),
             LifecycleJson.Serialize(new StateRecord(stored.State, stored.StateReason, now))]).ConfigureAwait(false);
        if ((long)result == 0) throw new StateConflictException($"{version.Adapter}@{version.Version} is already registered.");
        return stored;
    }

    public async Task<RegisteredVersion?> GetAsync(string adapter, string version, CancellationToken cancellationToken = default)
    {
        var record = Db.HashGetAsync(Key($"reg:versions:{adapter}"), version);
        var state = Db.HashGetAsync(Key($"reg:states:{adapter}"), version);
        await Task.WhenAll(record, state).ConfigureAwait(false);
        return record.Result.IsNull ? null : Merge(record.Result!, state.Result);
    }

    public async Task<IReadOnlyList<RegisteredVersion>> ListVersionsAsync(string adapter, CancellationToken cancellationToken = default)
    {
        var records = Db.HashGetAllAsync(Key($"reg:versions:{adapter}"));
        var states = Db.HashGetAllAsync(Key($"reg:states:{adapter}"));
        await Task.WhenAll(records, states).ConfigureAwait(false);
        var byVersion = states.Result.ToDictionary(e => e.Name.ToString(), e => e.Value);
        return records.Result.Select(e => Merge(e.Value!, byVersion.GetValueOrDefault(e.Name.ToString())))
            .OrderBy(v => v.CreatedAt).ThenBy(v => VersionNumber(v.Version)).ToArray();
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
        var members = await Db.SetMembersAsync(Key("reg:adapters")).ConfigureAwait(false);
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
        var now = _time.GetUtcNow();
        // The script compares-and-sets against this list: the table's legal sources, narrowed to the caller's.
        var allowed = VersionTransitions.Allowed(to, expectedFrom);
        var audit = new AuditEvent { Actor = actor, Action = "transition", Adapter = adapter, Version = version, From = "__FROM__", To = Name(to), Reason = reason, Details = details, At = now };
        try
        {
            await Db.ScriptEvaluateAsync(TransitionScript,
                [Key($"reg:states:{adapter}"), Key("audit:seq"), Key("audit")],
                [version, JsonSerializer.Serialize(allowed.Select(Name)),
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
                (legal ? "." : $"; a version never moves from {state} to {Name(to)}."));
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
            var raw = await Db.HashGetAsync(Key($"reg:versions:{adapter}"), version).ConfigureAwait(false);
            if (raw.IsNull) throw new KeyNotFoundException($"Adapter '{adapter}' has no version '{version}'.");
            var updated = LifecycleJson.Deserialize<RegisteredVersion>(raw!) with { Evaluation = evaluation.Clone(), UpdatedAt = _time.GetUtcNow() };
            var transaction = Db.CreateTransaction();
            transaction.AddCondition(Condition.HashEqual(Key($"reg:versions:{adapter}"), version, raw));
            _ = transaction.HashSetAsync(Key($"reg:versions:{adapter}"), version, LifecycleJson.Serialize(updated));
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
        var stored = auditEvent with { Sequence = 0, At = auditEvent.At == default ? _time.GetUtcNow() : auditEvent.At };
        long sequence = (long)await Db.ScriptEvaluateAsync(AuditScript, [Key("audit:seq"), Key("audit")], [LifecycleJson.Serialize(stored), stored.Adapter]).ConfigureAwait(false);
        return stored with { Sequence = sequence };
    }

    public async Task<IReadOnlyList<AuditEvent>> GetAuditAsync(string? adapter = null, long afterSequence = 0, int limit = 100, CancellationToken cancellationToken = default)
    {
        limit = Math.Clamp(limit, 1, 10_000);
        var result = new List<AuditEvent>();
        RedisValue start = $"{afterSequence}-2";
        while (result.Count < limit)
        {
            var entries = await Db.StreamRangeAsync(Key("audit"), start, "+", count: 500).ConfigureAwait(false);
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

    // ---------------------------------------------------------------- aliases

    async Task<AliasRoute?> IAliasReader.GetAsync(string alias, CancellationToken cancellationToken)
    {
        var value = await Db.StringGetAsync(Key($"alias:{alias}")).ConfigureAwait(false);
        return value.IsNull ? null : LifecycleJson.Deserialize<AliasRoute>(value!);
    }

    async Task<IReadOnlyList<AliasRoute>> IAliasReader.ListAsync(CancellationToken cancellationToken)
    {
        var names = (await Db.SetMembersAsync(Key("aliases")).ConfigureAwait(false)).Select(n => n.ToString()).Order(StringComparer.Ordinal).ToArray();
        if (names.Length == 0) return [];
        var values = await Db.StringGetAsync(names.Select(n => Key($"alias:{n}")).ToArray()).ConfigureAwait(false);
        return values.Where(v => !v.IsNull).Select(v => LifecycleJson.Deserialize<AliasRoute>(v!)).ToArray();
    }

    // Revision CAS: KEYS[3] holds the revision; ARGV[1] the expected one ("" for any); ARGV[2] the
    // route JSON with a "revision":0 placeholder, filled in here.
    private const string AliasScript = """
        local revision = tonumber(redis.call('GET', KEYS[3]) or '0')
        if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= revision then return redis.error_reply('CONFLICT ' .. revision) end
        revision = revision + 1
        local encoded = string.gsub(ARGV[2], '"revision":0', '"revision":' .. revision, 1)
        redis.call('SET', KEYS[3], revision)
        redis.call('SET', KEYS[1], encoded)
        redis.call('SADD', KEYS[2], ARGV[3])
        redis.call('PUBLISH', ARGV[4], ARGV[3])
        return encoded
        """;

    public async Task<AliasRoute> SetAsync(string alias, IReadOnlyList<AliasArm> arms, string actor, long? expectedRevision = null, string? baseModel = null,
        CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateArms(alias, arms);
        var route = new AliasRoute { Alias = alias, Arms = arms.ToArray(), BaseModel = baseModel, UpdatedAt = _time.GetUtcNow(), UpdatedBy = actor };
        try
        {
            var result = await Db.ScriptEvaluateAsync(AliasScript, [Key($"alias:{alias}"), Key("aliases"), Key($"alias-rev:{alias}")],
                [expectedRevision?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "", LifecycleJson.Serialize(route), alias, AliasChannel.ToString()]).ConfigureAwait(false);
            return LifecycleJson.Deserialize<AliasRoute>(result.ToString()!);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("CONFLICT", StringComparison.Ordinal))
        {
            throw new StateConflictException($"Alias '{alias}' changed (revision {ex.Message.Split(' ')[^1]}), not at the expected revision {expectedRevision}.");
        }
    }

    async Task<bool> IAliasStore.DeleteAsync(string alias, string actor, CancellationToken cancellationToken)
    {
        bool removed = await Db.KeyDeleteAsync(Key($"alias:{alias}")).ConfigureAwait(false);
        await Db.SetRemoveAsync(Key("aliases"), alias).ConfigureAwait(false);
        // The revision key stays, so a re-created alias keeps counting up.
        if (removed) await redis.GetSubscriber().PublishAsync(AliasChannel, alias).ConfigureAwait(false);
        return removed;
    }

    /// <summary>
    /// Current routes, then every change: a pub/sub message names the alias that changed, and the
    /// whole set is re-read every second as well, so a lost message or a Redis restart still converges.
    /// A deleted alias arrives with no arms.
    /// </summary>
    public async IAsyncEnumerable<AliasRoute> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var changed = Channel.CreateUnbounded<string?>();
        var subscriber = redis.GetSubscriber();
        var queue = await subscriber.SubscribeAsync(AliasChannel).ConfigureAwait(false);
        queue.OnMessage(message => changed.Writer.TryWrite(message.Message.ToString()));
        using var timer = new Timer(_ => changed.Writer.TryWrite(null), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        var known = new Dictionary<string, AliasRoute>(StringComparer.Ordinal);
        try
        {
            foreach (var route in await ((IAliasStore)this).ListAsync(cancellationToken).ConfigureAwait(false))
            {
                known[route.Alias] = route;
                yield return route;
            }
            await foreach (string? _ in changed.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                IReadOnlyList<AliasRoute> all;
                try { all = await ((IAliasStore)this).ListAsync(cancellationToken).ConfigureAwait(false); }
                catch (RedisException) { continue; } // Redis away: the next tick tries again
                foreach (var route in all)
                {
                    if (known.TryGetValue(route.Alias, out var seen) && seen.Revision == route.Revision) continue;
                    known[route.Alias] = route;
                    yield return route;
                }
                foreach (string gone in known.Keys.Except(all.Select(r => r.Alias)).ToArray())
                {
                    var last = known[gone];
                    known.Remove(gone);
                    yield return last with { Arms = [], Revision = last.Revision + 1 };
                }
            }
        }
        finally
        {
            await queue.UnsubscribeAsync().ConfigureAwait(false);
        }
    }

    // ---------------------------------------------------------------- pipelines

    /// <summary>The part of a pipeline record its scripts compare and change.</summary>
    private sealed record PipelineMeta(long Revision, bool Paused, DateTimeOffset UpdatedAt, string? UpdatedBy);

    async Task<PipelineRecord?> IPipelineReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        var definition = Db.StringGetAsync(Key($"pipeline:{adapter}"));
        var meta = Db.StringGetAsync(Key($"pipeline-meta:{adapter}"));
        await Task.WhenAll(definition, meta).ConfigureAwait(false);
        return definition.Result.IsNull || meta.Result.IsNull ? null : Pipeline(adapter, definition.Result!, meta.Result!);
    }

    async Task<IReadOnlyList<PipelineRecord>> IPipelineReader.ListAsync(CancellationToken cancellationToken)
    {
        var names = (await Db.SetMembersAsync(Key("pipelines")).ConfigureAwait(false)).Select(n => n.ToString()).Order(StringComparer.Ordinal).ToArray();
        if (names.Length == 0) return [];
        var definitions = await Db.StringGetAsync(names.Select(n => Key($"pipeline:{n}")).ToArray()).ConfigureAwait(false);
        var metas = await Db.StringGetAsync(names.Select(n => Key($"pipeline-meta:{n}")).ToArray()).ConfigureAwait(false);
        return names.Select((n, i) => definitions[i].IsNull || metas[i].IsNull ? null : Pipeline(n, definitions[i]!, metas[i]!)).OfType<PipelineRecord>().ToArray();
    }

    private static PipelineRecord Pipeline(string adapter, string definition, string meta)
    {
        var m = LifecycleJson.Deserialize<PipelineMeta>(meta);
        return new PipelineRecord
        {
            Adapter = adapter, Definition = JsonDocument.Parse(definition).RootElement.Clone(), Paused = m.Paused, Revision = m.Revision,
            UpdatedAt = m.UpdatedAt, UpdatedBy = m.UpdatedBy,
        };
    }

    // KEYS[1] definition, KEYS[2] meta, KEYS[3] the set; ARGV[1] expected revision or ""; ARGV[2]
    // the new definition (upsert) or "" (pause); ARGV[3] paused: "true"/"false" or "" to keep;
    // ARGV[4] actor; ARGV[5] time; ARGV[6] adapter. Returns the new meta JSON.
    private const string PipelineScript = """
        local raw = redis.call('GET', KEYS[2])
        local revision = 0
        local paused = false
        if raw then
          local meta = cjson.decode(raw)
          revision = meta['revision']
          paused = meta['paused']
        elseif ARGV[2] == '' then
          return redis.error_reply('NOTFOUND')
        end
        if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= revision then return redis.error_reply('CONFLICT ' .. revision) end
        if ARGV[3] ~= '' then paused = (ARGV[3] == 'true') end
        if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2]) end
        local meta = cjson.encode({revision = revision + 1, paused = paused, updated_by = ARGV[4], updated_at = ARGV[5]})
        redis.call('SET', KEYS[2], meta)
        redis.call('SADD', KEYS[3], ARGV[6])
        return meta
        """;

    public Task<PipelineRecord> UpsertAsync(string adapter, JsonElement definition, string actor, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        return PipelineWriteAsync(adapter, expectedRevision, definition.GetRawText(), "", actor);
    }

    public Task<PipelineRecord> SetPausedAsync(string adapter, bool paused, string actor, CancellationToken cancellationToken = default) =>
        PipelineWriteAsync(adapter, null, "", paused ? "true" : "false", actor);

    private async Task<PipelineRecord> PipelineWriteAsync(string adapter, long? expectedRevision, string definition, string paused, string actor)
    {
        try
        {
            await Db.ScriptEvaluateAsync(PipelineScript, [Key($"pipeline:{adapter}"), Key($"pipeline-meta:{adapter}"), Key("pipelines")],
                [expectedRevision?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "", definition, paused, actor,
                 JsonSerializer.Serialize(_time.GetUtcNow()).Trim('"'), adapter]).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("NOTFOUND", StringComparison.Ordinal))
        {
            throw new KeyNotFoundException($"No pipeline for '{adapter}'.");
        }
        catch (RedisServerException ex) when (ex.Message.Contains("CONFLICT", StringComparison.Ordinal))
        {
            throw new StateConflictException($"Pipeline '{adapter}' changed (revision {ex.Message.Split(' ')[^1]}), not at the expected revision {expectedRevision}.");
        }
        return await ((IPipelineStore)this).GetAsync(adapter).ConfigureAwait(false) ?? throw new KeyNotFoundException($"No pipeline for '{adapter}'.");
    }

    async Task<bool> IPipelineStore.DeleteAsync(string adapter, string actor, CancellationToken cancellationToken)
    {
        bool removed = await Db.KeyDeleteAsync(Key($"pipeline:{adapter}")).ConfigureAwait(false);
        await Db.KeyDeleteAsync(Key($"pipeline-meta:{adapter}")).ConfigureAwait(false);
        await Db.SetRemoveAsync(Key("pipelines"), adapter).ConfigureAwait(false);
        await Db.KeyDeleteAsync(Key($"pipeline-state:{adapter}")).ConfigureAwait(false);
        return removed;
    }

    public async Task<JsonElement?> GetStateAsync(string adapter, string key, CancellationToken cancellationToken = default)
    {
        var value = await Db.HashGetAsync(Key($"pipeline-state:{adapter}"), key).ConfigureAwait(false);
        return value.IsNull ? null : JsonDocument.Parse(value.ToString()!).RootElement.Clone();
    }

    public Task SetStateAsync(string adapter, string key, JsonElement value, CancellationToken cancellationToken = default) =>
        value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined
            ? Db.HashDeleteAsync(Key($"pipeline-state:{adapter}"), key)
            : Db.HashSetAsync(Key($"pipeline-state:{adapter}"), key, value.GetRawText());

    // ---------------------------------------------------------------- approvals

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
        var now = _time.GetUtcNow();
        var approval = new Approval { Id = Guid.NewGuid().ToString("N"), Adapter = adapter, Version = version, Action = action, Evidence = evidence?.Clone(), CreatedAt = now };
        var id = await Db.ScriptEvaluateAsync(RequestApprovalScript, [Key($"approval-pending:{adapter}:{version}:{Name(action)}"), Key("approvals")],
            [approval.Id, LifecycleJson.Serialize(approval), $"{prefix}:approval:", now.ToUnixTimeMilliseconds(),
             LifecycleJson.Serialize(new ApprovalStatusRecord(ApprovalStatus.Pending, null, null, null)), $"{prefix}:approval-status:"]).ConfigureAwait(false);
        return await ((IApprovalStore)this).GetAsync(id.ToString()!, cancellationToken).ConfigureAwait(false) ?? approval;
    }

    async Task<Approval?> IApprovalReader.GetAsync(string id, CancellationToken cancellationToken)
    {
        var values = await Db.StringGetAsync([Key($"approval:{id}"), Key($"approval-status:{id}")]).ConfigureAwait(false);
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
        var ids = await Db.SortedSetRangeByRankAsync(Key("approvals"), -2000, -1).ConfigureAwait(false);
        if (ids.Length == 0) return [];
        var approvals = await Db.StringGetAsync(ids.Select(id => Key($"approval:{id}")).ToArray()).ConfigureAwait(false);
        var statuses = await Db.StringGetAsync(ids.Select(id => Key($"approval-status:{id}")).ToArray()).ConfigureAwait(false);
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
        var resolved = new ApprovalStatusRecord(approve ? ApprovalStatus.Approved : ApprovalStatus.Rejected, actor, _time.GetUtcNow(), comment);
        try
        {
            await Db.ScriptEvaluateAsync(ResolveScript, [Key($"approval-status:{id}"), Key($"approval:{id}")], [LifecycleJson.Serialize(resolved), $"{prefix}:approval-pending:"]).ConfigureAwait(false);
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
        await Db.KeyDeleteAsync(Key($"approval-pending:{approval.Adapter}:{approval.Version}:{Name(approval.Action)}")).ConfigureAwait(false);
        return approval;
    }

    // ---------------------------------------------------------------- canaries

    async Task<CanaryState?> ICanaryReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        var values = await Db.StringGetAsync([Key($"canary:{adapter}"), Key($"canary-rev:{adapter}")]).ConfigureAwait(false);
        if (!values[0].IsNull) return LifecycleJson.Deserialize<CanaryState>(values[0]!) with { Revision = (long)values[1] };
        var legacy = await Db.HashGetAsync(Key($"pipeline-state:{adapter}"), CanaryState.LegacyPipelineStateKey).ConfigureAwait(false);
        return legacy.IsNull ? null : JsonSerializer.Deserialize<CanaryState>(legacy.ToString(), LifecycleJson.Options);
    }

    // KEYS[1] the canary, KEYS[2] its revision counter, KEYS[3] the pipeline state (where a canary
    // from before the canary store may sit: see CanaryState.LegacyPipelineStateKey); ARGV[1] the
    // expected revision or "", ARGV[2] the legacy field, ARGV[3] the new JSON ("" to clear). A legacy
    // canary is at revision 0, like none. Returns the new revision (put) or whether one was removed (clear).
    private const string CanaryScript = """
        local exists = redis.call('EXISTS', KEYS[1]) == 1
        local revision = tonumber(redis.call('GET', KEYS[2]) or '0')
        local current = 0
        if exists then current = revision end
        if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= current then return redis.error_reply('CONFLICT ' .. current) end
        local legacy = redis.call('HDEL', KEYS[3], ARGV[2])
        if ARGV[3] == '' then
          redis.call('DEL', KEYS[1])
          if exists or legacy == 1 then return 1 end
          return 0
        end
        revision = revision + 1
        redis.call('SET', KEYS[2], revision)
        redis.call('SET', KEYS[1], ARGV[3])
        return revision
        """;

    public async Task<CanaryState> PutAsync(string adapter, CanaryState state, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        long revision = await CanaryWriteAsync(adapter, expectedRevision, LifecycleJson.Serialize(state)).ConfigureAwait(false);
        return state with { Revision = revision };
    }

    public async Task<bool> ClearAsync(string adapter, long? expectedRevision = null, CancellationToken cancellationToken = default) =>
        await CanaryWriteAsync(adapter, expectedRevision, "").ConfigureAwait(false) == 1;

    private async Task<long> CanaryWriteAsync(string adapter, long? expectedRevision, string json)
    {
        try
        {
            return (long)await Db.ScriptEvaluateAsync(CanaryScript, [Key($"canary:{adapter}"), Key($"canary-rev:{adapter}"), Key($"pipeline-state:{adapter}")],
                [expectedRevision?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "", CanaryState.LegacyPipelineStateKey, json]).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("CONFLICT", StringComparison.Ordinal))
        {
            throw new StateConflictException($"The canary of '{adapter}' is at revision {ex.Message.Split(' ')[^1]}, not {expectedRevision}.");
        }
    }

    // ---------------------------------------------------------------- job history

    public async Task RecordAsync(JobRun run, CancellationToken cancellationToken = default)
    {
        // Keyed by the step's wire name, as records written before the enum were.
        string field = $"{run.RunId}|{Name(run.Step)}";
        var batch = Db.CreateBatch();
        var set = batch.HashSetAsync(Key("jobs"), field, LifecycleJson.Serialize(run));
        var index = batch.SortedSetAddAsync(Key("jobs-by-time"), field, run.StartedAt.ToUnixTimeMilliseconds());
        batch.Execute();
        await Task.WhenAll(set, index).ConfigureAwait(false);
        long count = await Db.SortedSetLengthAsync(Key("jobs-by-time")).ConfigureAwait(false);
        if (count > JobHistoryLimit)
        {
            var oldest = await Db.SortedSetRangeByRankAsync(Key("jobs-by-time"), 0, count - JobHistoryLimit - 1).ConfigureAwait(false);
            await Db.SortedSetRemoveAsync(Key("jobs-by-time"), oldest).ConfigureAwait(false);
            await Db.HashDeleteAsync(Key("jobs"), oldest).ConfigureAwait(false);
        }
    }

    async Task<IReadOnlyList<JobRun>> IJobHistory.ListAsync(string? adapter, int limit, CancellationToken cancellationToken)
    {
        limit = Math.Clamp(limit, 1, 10_000);
        var result = new List<JobRun>();
        long offset = 0;
        while (result.Count < limit)
        {
            var fields = await Db.SortedSetRangeByRankAsync(Key("jobs-by-time"), offset, offset + 499, Order.Descending).ConfigureAwait(false);
            if (fields.Length == 0) break;
            offset += fields.Length;
            var values = await Db.HashGetAsync(Key("jobs"), fields).ConfigureAwait(false);
            foreach (var v in values)
            {
                if (v.IsNull) continue;
                var run = LifecycleJson.Deserialize<JobRun>(v!);
                if (adapter is null || run.Adapter == adapter) result.Add(run);
                if (result.Count == limit) break;
            }
        }
        return result;
    }

    // ---------------------------------------------------------------- leases

    // KEYS[1] lease, KEYS[2] token counter; ARGV owner, ttl ms. Returns the token or nil.
    private const string AcquireScript = """
        local held = redis.call('GET', KEYS[1])
        if held then
          local sep = string.find(held, '|', 1, true)
          local owner = string.sub(held, 1, sep - 1)
          if owner ~= ARGV[1] then return false end
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return tonumber(string.sub(held, sep + 1))
        end
        local token = redis.call('INCR', KEYS[2])
        redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
        return token
        """;

    public async Task<LeaseGrant?> TryAcquireAsync(string name, string owner, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        var result = await Db.ScriptEvaluateAsync(AcquireScript, [Key($"lease:{name}"), Key($"lease-token:{name}")],
            [owner, (long)Math.Max(1, ttl.TotalMilliseconds)]).ConfigureAwait(false);
        return result.IsNull ? null : new LeaseGrant(name, owner, (long)result, _time.GetUtcNow() + ttl);
    }

    private const string RenewScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """;

    public async Task<bool> RenewAsync(LeaseGrant lease, TimeSpan ttl, CancellationToken cancellationToken = default) =>
        (long)await Db.ScriptEvaluateAsync(RenewScript, [Key($"lease:{lease.Name}")], [$"{lease.Owner}|{lease.Token}", (long)Math.Max(1, ttl.TotalMilliseconds)]).ConfigureAwait(false) == 1;

    private const string ReleaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """;

    public Task ReleaseAsync(LeaseGrant lease, CancellationToken cancellationToken = default) =>
        Db.ScriptEvaluateAsync(ReleaseScript, [Key($"lease:{lease.Name}")], [$"{lease.Owner}|{lease.Token}"]);

    public async Task<bool> IsCurrentAsync(LeaseGrant lease, CancellationToken cancellationToken = default) =>
        await Db.StringGetAsync(Key($"lease:{lease.Name}")).ConfigureAwait(false) == $"{lease.Owner}|{lease.Token}";

    public Task<bool> TryClaimOnceAsync(string key, string owner, TimeSpan retention, CancellationToken cancellationToken = default) =>
        Db.StringSetAsync(Key($"claim:{key}"), owner, retention, When.NotExists);

    private static long VersionNumber(string version) => version.Length > 1 && version[0] == 'v' && long.TryParse(version.AsSpan(1), out long n) ? n : long.MaxValue;

    private static string Name<T>(T value) where T : struct, Enum => LifecycleJson.Name(value);
}
