using System.Text.Json;
using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>Pipeline definitions in Redis, their revision and paused flag in a small meta value the scripts compare, and the controller's per-pipeline state.</summary>
internal sealed class RedisPipelineStore(RedisLifecycleContext redis) : IPipelineStore
{
    /// <summary>The part of a pipeline record its scripts compare and change.</summary>
    private sealed record PipelineMeta(long Revision, bool Paused, DateTimeOffset UpdatedAt, string? UpdatedBy);

    async Task<PipelineRecord?> IPipelineReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        var definition = redis.Db.StringGetAsync(redis.Key($"pipeline:{adapter}"));
        var meta = redis.Db.StringGetAsync(redis.Key($"pipeline-meta:{adapter}"));
        await Task.WhenAll(definition, meta).ConfigureAwait(false);
        return definition.Result.IsNull || meta.Result.IsNull ? null : Pipeline(adapter, definition.Result!, meta.Result!);
    }

    async Task<IReadOnlyList<PipelineRecord>> IPipelineReader.ListAsync(CancellationToken cancellationToken)
    {
        var names = (await redis.Db.SetMembersAsync(redis.Key("pipelines")).ConfigureAwait(false)).Select(n => n.ToString()).Order(StringComparer.Ordinal).ToArray();
        if (names.Length == 0) return [];
        var definitions = await redis.Db.StringGetAsync(names.Select(n => redis.Key($"pipeline:{n}")).ToArray()).ConfigureAwait(false);
        var metas = await redis.Db.StringGetAsync(names.Select(n => redis.Key($"pipeline-meta:{n}")).ToArray()).ConfigureAwait(false);
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
            await redis.Db.ScriptEvaluateAsync(PipelineScript, [redis.Key($"pipeline:{adapter}"), redis.Key($"pipeline-meta:{adapter}"), redis.Key("pipelines")],
                [expectedRevision?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "", definition, paused, actor,
                 JsonSerializer.Serialize(redis.Now).Trim('"'), adapter]).ConfigureAwait(false);
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
        bool removed = await redis.Db.KeyDeleteAsync(redis.Key($"pipeline:{adapter}")).ConfigureAwait(false);
        await redis.Db.KeyDeleteAsync(redis.Key($"pipeline-meta:{adapter}")).ConfigureAwait(false);
        await redis.Db.SetRemoveAsync(redis.Key("pipelines"), adapter).ConfigureAwait(false);
        await redis.Db.KeyDeleteAsync(redis.Key($"pipeline-state:{adapter}")).ConfigureAwait(false);
        return removed;
    }

    public async Task<JsonElement?> GetStateAsync(string adapter, string key, CancellationToken cancellationToken = default)
    {
        var value = await redis.Db.HashGetAsync(redis.Key($"pipeline-state:{adapter}"), key).ConfigureAwait(false);
        return value.IsNull ? null : JsonDocument.Parse(value.ToString()!).RootElement.Clone();
    }

    public Task SetStateAsync(string adapter, string key, JsonElement value, CancellationToken cancellationToken = default) =>
        value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined
            ? redis.Db.HashDeleteAsync(redis.Key($"pipeline-state:{adapter}"), key)
            : redis.Db.HashSetAsync(redis.Key($"pipeline-state:{adapter}"), key, value.GetRawText());
}
