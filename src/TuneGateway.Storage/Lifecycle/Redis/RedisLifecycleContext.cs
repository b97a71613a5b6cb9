using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>
/// What the Redis lifecycle stores share: the connection, the key prefix and the clock. The
/// stores are shared by every gateway and controller replica. Each operation
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
internal sealed class RedisLifecycleContext(IConnectionMultiplexer connection, string prefix = "tunegw", TimeProvider? time = null)
{
    public IConnectionMultiplexer Connection => connection;

    public string Prefix => prefix;

    public IDatabase Db => connection.GetDatabase();

    public DateTimeOffset Now => (time ?? TimeProvider.System).GetUtcNow();

    public RedisKey Key(string suffix) => $"{prefix}:{suffix}";
}

/// <summary>The Redis backend: every store over one <see cref="RedisLifecycleContext"/>.</summary>
internal static class RedisLifecycleStores
{
    public static LifecycleStoreSet Open(IConnectionMultiplexer connection, string prefix = "tunegw", TimeProvider? time = null)
    {
        var redis = new RedisLifecycleContext(connection, prefix, time);
        return new LifecycleStoreSet(new RedisAdapterRegistry(redis), new RedisAliasStore(redis), new RedisPipelineStore(redis), new RedisApprovalStore(redis),
            new RedisCanaryStore(redis), new RedisJobHistory(redis), new RedisLeaseManager(redis));
    }
}
