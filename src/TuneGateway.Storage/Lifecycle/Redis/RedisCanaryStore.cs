using System.Text.Json;
using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>Canaries in Redis, with a revision counter per adapter that outlives each canary.</summary>
internal sealed class RedisCanaryStore(RedisLifecycleContext redis) : ICanaryStore
{
    async Task<CanaryState?> ICanaryReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        var values = await redis.Db.StringGetAsync([redis.Key($"canary:{adapter}"), redis.Key($"canary-rev:{adapter}")]).ConfigureAwait(false);
        if (!values[0].IsNull) return LifecycleJson.Deserialize<CanaryState>(values[0]!) with { Revision = (long)values[1] };
        var legacy = await redis.Db.HashGetAsync(redis.Key($"pipeline-state:{adapter}"), CanaryState.LegacyPipelineStateKey).ConfigureAwait(false);
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
            return (long)await redis.Db.ScriptEvaluateAsync(CanaryScript, [redis.Key($"canary:{adapter}"), redis.Key($"canary-rev:{adapter}"), redis.Key($"pipeline-state:{adapter}")],
                [expectedRevision?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "", CanaryState.LegacyPipelineStateKey, json]).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("CONFLICT", StringComparison.Ordinal))
        {
            throw new StateConflictException($"The canary of '{adapter}' is at revision {ex.Message.Split(' ')[^1]}, not {expectedRevision}.");
        }
    }
}
