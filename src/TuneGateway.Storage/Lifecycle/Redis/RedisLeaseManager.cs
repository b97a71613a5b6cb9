using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>Leases with fencing tokens and once-only claims in Redis.</summary>
internal sealed class RedisLeaseManager(RedisLifecycleContext redis) : ILeaseManager
{
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
        var result = await redis.Db.ScriptEvaluateAsync(AcquireScript, [redis.Key($"lease:{name}"), redis.Key($"lease-token:{name}")],
            [owner, (long)Math.Max(1, ttl.TotalMilliseconds)]).ConfigureAwait(false);
        return result.IsNull ? null : new LeaseGrant(name, owner, (long)result, redis.Now + ttl);
    }

    private const string RenewScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """;

    public async Task<bool> RenewAsync(LeaseGrant lease, TimeSpan ttl, CancellationToken cancellationToken = default) =>
        (long)await redis.Db.ScriptEvaluateAsync(RenewScript, [redis.Key($"lease:{lease.Name}")], [$"{lease.Owner}|{lease.Token}", (long)Math.Max(1, ttl.TotalMilliseconds)]).ConfigureAwait(false) == 1;

    private const string ReleaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """;

    public Task ReleaseAsync(LeaseGrant lease, CancellationToken cancellationToken = default) =>
        redis.Db.ScriptEvaluateAsync(ReleaseScript, [redis.Key($"lease:{lease.Name}")], [$"{lease.Owner}|{lease.Token}"]);

    public async Task<bool> IsCurrentAsync(LeaseGrant lease, CancellationToken cancellationToken = default) =>
        await redis.Db.StringGetAsync(redis.Key($"lease:{lease.Name}")).ConfigureAwait(false) == $"{lease.Owner}|{lease.Token}";

    public Task<bool> TryClaimOnceAsync(string key, string owner, TimeSpan retention, CancellationToken cancellationToken = default) =>
        redis.Db.StringSetAsync(redis.Key($"claim:{key}"), owner, retention, When.NotExists);
}
