using System.Runtime.CompilerServices;
using System.Threading.Channels;
using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>Alias routes in Redis: revision compare-and-set in a script, changes published to every gateway.</summary>
internal sealed class RedisAliasStore(RedisLifecycleContext redis) : IAliasStore
{
    private RedisChannel AliasChannel => RedisChannel.Literal($"{redis.Prefix}:alias-changes");

    async Task<AliasRoute?> IAliasReader.GetAsync(string alias, CancellationToken cancellationToken)
    {
        var value = await redis.Db.StringGetAsync(redis.Key($"alias:{alias}")).ConfigureAwait(false);
        return value.IsNull ? null : LifecycleJson.Deserialize<AliasRoute>(value!);
    }

    async Task<IReadOnlyList<AliasRoute>> IAliasReader.ListAsync(CancellationToken cancellationToken)
    {
        var names = (await redis.Db.SetMembersAsync(redis.Key("aliases")).ConfigureAwait(false)).Select(n => n.ToString()).Order(StringComparer.Ordinal).ToArray();
        if (names.Length == 0) return [];
        var values = await redis.Db.StringGetAsync(names.Select(n => redis.Key($"alias:{n}")).ToArray()).ConfigureAwait(false);
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
        var route = new AliasRoute { Alias = alias, Arms = arms.ToArray(), BaseModel = baseModel, UpdatedAt = redis.Now, UpdatedBy = actor };
        try
        {
            var result = await redis.Db.ScriptEvaluateAsync(AliasScript, [redis.Key($"alias:{alias}"), redis.Key("aliases"), redis.Key($"alias-rev:{alias}")],
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
        bool removed = await redis.Db.KeyDeleteAsync(redis.Key($"alias:{alias}")).ConfigureAwait(false);
        await redis.Db.SetRemoveAsync(redis.Key("aliases"), alias).ConfigureAwait(false);
        // The revision key stays, so a re-created alias keeps counting up.
        if (removed) await redis.Connection.GetSubscriber().PublishAsync(AliasChannel, alias).ConfigureAwait(false);
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
        var subscriber = redis.Connection.GetSubscriber();
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
}
