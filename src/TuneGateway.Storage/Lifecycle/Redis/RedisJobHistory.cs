using StackExchange.Redis;

namespace TuneGateway.Storage.Lifecycle.Redis;

/// <summary>The job history in Redis: a hash of steps and a time index, capped at <see cref="JobHistoryLimit"/>.</summary>
internal sealed class RedisJobHistory(RedisLifecycleContext redis) : IJobHistory
{
    private const int JobHistoryLimit = 20_000;

    public async Task RecordAsync(JobRun run, CancellationToken cancellationToken = default)
    {
        // Keyed by the step's wire name, as records written before the enum were.
        string field = $"{run.RunId}|{LifecycleJson.Name(run.Step)}";
        var batch = redis.Db.CreateBatch();
        var set = batch.HashSetAsync(redis.Key("jobs"), field, LifecycleJson.Serialize(run));
        var index = batch.SortedSetAddAsync(redis.Key("jobs-by-time"), field, run.StartedAt.ToUnixTimeMilliseconds());
        batch.Execute();
        await Task.WhenAll(set, index).ConfigureAwait(false);
        long count = await redis.Db.SortedSetLengthAsync(redis.Key("jobs-by-time")).ConfigureAwait(false);
        if (count > JobHistoryLimit)
        {
            var oldest = await redis.Db.SortedSetRangeByRankAsync(redis.Key("jobs-by-time"), 0, count - JobHistoryLimit - 1).ConfigureAwait(false);
            await redis.Db.SortedSetRemoveAsync(redis.Key("jobs-by-time"), oldest).ConfigureAwait(false);
            await redis.Db.HashDeleteAsync(redis.Key("jobs"), oldest).ConfigureAwait(false);
        }
    }

    async Task<IReadOnlyList<JobRun>> IJobHistory.ListAsync(string? adapter, int limit, CancellationToken cancellationToken)
    {
        limit = Math.Clamp(limit, 1, 10_000);
        var result = new List<JobRun>();
        long offset = 0;
        while (result.Count < limit)
        {
            var fields = await redis.Db.SortedSetRangeByRankAsync(redis.Key("jobs-by-time"), offset, offset + 499, Order.Descending).ConfigureAwait(false);
            if (fields.Length == 0) break;
            offset += fields.Length;
            var values = await redis.Db.HashGetAsync(redis.Key("jobs"), fields).ConfigureAwait(false);
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
}
