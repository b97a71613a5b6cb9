using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using TuneGateway.Storage.Serialization;

namespace TuneGateway.Storage;

/// <summary>
/// The traffic log and feedback in Redis: one stream per adapter, written in pipelined batches of Lua
/// scripts that append idempotently, assign positions and trim as they go.
/// </summary>
/// <remarks>
/// Key layout (prefix <see cref="TrafficLogOptions.KeyPrefix"/>, <c>p</c> below):
/// <list type="bullet">
/// <item><c>p:traffic:{adapter}</c> — stream; one entry per request, id = <see cref="LogPosition"/>, fields as in <see cref="RedisEntryCodec"/>.
/// Trimmed with <c>MAXLEN ~</c> and <c>MINID ~</c> on every append, exactly by <see cref="TrimAsync"/>.</item>
/// <item><c>p:traffic-id:{id}</c> — string <c>{adapter}\n{position}</c>; the id index, expiring after <see cref="TrafficLogOptions.MaxAge"/>.</item>
/// <item><c>p:traffic-tails</c> — hash adapter → last position assigned (keeps positions increasing).</item>
/// <item><c>p:traffic-adapters</c> — set of adapter names with a stream.</item>
/// <item><c>p:feedback:{adapter}</c> — hash id → feedback JSON.</item>
/// <item><c>p:feedback-seq:{adapter}</c> — sorted set id → change sequence, for "new feedback since a cursor".</item>
/// <item><c>p:feedback-req:{adapter}</c> — sorted set id → request position time, to drop feedback with its request.</item>
/// <item><c>p:feedback-counter</c> — the change sequence.</item>
/// </list>
/// Scripts touch keys of several adapters' families, so the layout targets a single Redis node (with
/// replicas), not Redis Cluster.
/// </remarks>
public sealed class RedisTrafficStore : ITrafficStore
{
    /// <summary>Lifetime of id-index keys when <see cref="TrafficLogOptions.MaxAge"/> is not set.</summary>
    public static readonly TimeSpan IndexTtlWithoutMaxAge = TimeSpan.FromDays(365);

    // KEYS: stream, id key, tails hash, adapters set.
    // ARGV: adapter, entry ms, max length (0 = none), min ms to keep (0 = none), id ttl ms, field/value pairs…
    // Returns {1, position} when appended, {0, "adapter\nposition"} when the id was already logged.
    private const string AppendScript = """
        local existing = redis.call('GET', KEYS[2])
        if existing then return {0, existing} end
        local ms = tonumber(ARGV[2])
        local id = string.format('%.0f-0', ms)
        local tail = redis.call('HGET', KEYS[3], ARGV[1])
        if tail then
          local dash = string.find(tail, '-', 1, true)
          if ms <= tonumber(string.sub(tail, 1, dash - 1)) then
            id = string.sub(tail, 1, dash - 1) .. '-' .. string.format('%.0f', tonumber(string.sub(tail, dash + 1)) + 1)
          end
        end
        local args = {'XADD', KEYS[1]}
        if tonumber(ARGV[3]) > 0 then
          args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = ARGV[3]
        end
        local idAt = #args + 1
        args[idAt] = id
        for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
        local added = redis.pcall(unpack(args))
        if type(added) == 'table' and added.err then
          args[idAt] = '*'
          added = redis.call(unpack(args))
        end
        redis.call('HSET', KEYS[3], ARGV[1], added)
        local ref = ARGV[1] .. '\n' .. added
        if tonumber(ARGV[5]) > 0 then
          redis.call('SET', KEYS[2], ref, 'PX', ARGV[5])
        else
          redis.call('SET', KEYS[2], ref)
        end
        redis.call('SADD', KEYS[4], ARGV[1])
        if tonumber(ARGV[4]) > 0 then
          redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[4])
        end
        return {1, added}
        """;

    // KEYS: feedback hash, sequence zset, by-request zset, counter. ARGV: id, json, request position ms.
    // Returns {1 if new else 0, sequence}.
    private const string FeedbackScript = """
        local seq = redis.call('INCR', KEYS[4])
        local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], seq, ARGV[1])
        redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
        return {created, seq}
        """;

    private readonly IConnectionMultiplexer _redis;
    private readonly TrafficLogOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _prefix;

    /// <summary>Creates the store over the shared connection.</summary>
    public RedisTrafficStore(
        IConnectionMultiplexer redis,
        IOptions<TrafficLogOptions> options,
        TimeProvider? timeProvider = null,
        ILogger<RedisTrafficStore>? logger = null)
    {
        _redis = redis ?? throw new ArgumentNullException(nameof(redis));
        _options = options.Value;
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _prefix = _options.KeyPrefix;
    }

    /// <inheritdoc />
    public bool IsAvailable => _redis.IsConnected;

    /// <summary>The stream key of an adapter's log.</summary>
    public RedisKey StreamKey(string adapter) => $"{_prefix}:traffic:{adapter}";

    private RedisKey IdKey(string id) => $"{_prefix}:traffic-id:{id}";

    private RedisKey TailsKey => $"{_prefix}:traffic-tails";

    private RedisKey AdaptersKey => $"{_prefix}:traffic-adapters";

    private RedisKey FeedbackKey(string adapter) => $"{_prefix}:feedback:{adapter}";

    private RedisKey FeedbackSeqKey(string adapter) => $"{_prefix}:feedback-seq:{adapter}";

    private RedisKey FeedbackByRequestKey(string adapter) => $"{_prefix}:feedback-req:{adapter}";

    private RedisKey FeedbackCounterKey => $"{_prefix}:feedback-counter";

    private IDatabase Database => _redis.GetDatabase();

    /// <inheritdoc />
    public async Task<int> AppendAsync(IReadOnlyList<TrafficEntry> entries, CancellationToken cancellationToken = default)
    {
        TrafficEntry.ThrowIfAnyInvalid(entries, nameof(entries));
        if (entries.Count == 0)
        {
            return 0;
        }

        var now = _time.GetUtcNow();
        RedisValue maxLength = _options.MaxEntriesPerStream ?? 0;
        RedisValue minMs = _options.MaxAge is { } age ? LogPosition.MillisecondsOf(now - age) : 0;
        RedisValue ttlMs = (long)(_options.MaxAge ?? IndexTtlWithoutMaxAge).TotalMilliseconds;

        // One IBatch: all scripts leave in a single write, and Redis answers them in order.
        var batch = Database.CreateBatch();
        var pending = new Task<RedisResult>[entries.Count];
        var values = new List<RedisValue>(48);
        for (var i = 0; i < entries.Count; i++)
        {
            var entry = entries[i];
            var adapter = entry.StreamName;
            values.Clear();
            values.Add(adapter);
            values.Add(LogPosition.MillisecondsOf(entry.Timestamp));
            values.Add(maxLength);
            values.Add(minMs);
            values.Add(ttlMs);
            RedisEntryCodec.Encode(entry, values);
            pending[i] = batch.ScriptEvaluateAsync(
                AppendScript,
                [StreamKey(adapter), IdKey(entry.Id), TailsKey, AdaptersKey],
                [.. values]);
        }

        batch.Execute();
        var results = await Task.WhenAll(pending).WaitAsync(cancellationToken).ConfigureAwait(false);
        var added = 0;
        foreach (var result in results)
        {
            if ((long)result[0] == 1)
            {
                added++;
            }
        }

        return added;
    }

    /// <inheritdoc />
    public async Task<TrafficRecord?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        var located = await LocateAsync(id).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (located is not { } found)
        {
            return null;
        }

        var feedback = await Database.HashGetAsync(FeedbackKey(found.Adapter), id).WaitAsync(cancellationToken).ConfigureAwait(false);
        return new TrafficRecord(found.Position, found.Entry, DecodeFeedback(feedback));
    }

    /// <inheritdoc />
    public async Task<TrafficPage> QueryAsync(TrafficQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentException.ThrowIfNullOrEmpty(query.Adapter, nameof(query));
        var limit = query.EffectiveLimit;
        RedisValue min = query.After is { } after ? $"({after}"
            : query.Since is { } since ? new LogPosition(LogPosition.MillisecondsOf(since), 0).ToString()
            : "-";
        RedisValue max = query.Until is { } until ? $"({new LogPosition(LogPosition.MillisecondsOf(until), 0)}" : "+";

        var db = Database;
        var stream = await db.StreamRangeAsync(StreamKey(query.Adapter), min, max, limit + 1, Order.Ascending)
            .WaitAsync(cancellationToken).ConfigureAwait(false);
        var count = Math.Min(stream.Length, limit);
        var feedback = new RedisValue[count];
        if (query.IncludeFeedback && count > 0)
        {
            var ids = new RedisValue[count];
            for (var i = 0; i < count; i++)
            {
                ids[i] = stream[i][RedisEntryCodec.Id];
            }

            feedback = await db.HashGetAsync(FeedbackKey(query.Adapter), ids).WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        var items = new TrafficRecord[count];
        for (var i = 0; i < count; i++)
        {
            items[i] = new TrafficRecord(
                LogPosition.Parse(stream[i].Id!),
                RedisEntryCodec.Decode(stream[i].Values),
                DecodeFeedback(feedback[i]));
        }

        var next = stream.Length > limit ? items[^1].Position.ToString() : null;
        return new TrafficPage(items, next);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<AdapterTrafficSummary>> ListAdaptersAsync(CancellationToken cancellationToken = default)
    {
        var db = Database;
        var names = await db.SetMembersAsync(AdaptersKey).WaitAsync(cancellationToken).ConfigureAwait(false);
        var lengths = names.Select(name => db.StreamLengthAsync(StreamKey(name!))).ToArray();
        await Task.WhenAll(lengths).WaitAsync(cancellationToken).ConfigureAwait(false);
        return names
            .Select((name, i) => new AdapterTrafficSummary(name!, lengths[i].Result))
            .OrderBy(summary => summary.Adapter, StringComparer.Ordinal)
            .ToArray();
    }

    /// <inheritdoc />
    public async Task<FeedbackResult> UpsertFeedbackAsync(FeedbackInput feedback, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(feedback);
        var located = await LocateAsync(feedback.Id).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (located is not { } found)
        {
            return new FeedbackResult(FeedbackStatus.NotFound, Error: $"No logged request has id '{feedback.Id}'.");
        }

        var db = Database;
        var previous = DecodeFeedback(await db.HashGetAsync(FeedbackKey(found.Adapter), feedback.Id).WaitAsync(cancellationToken).ConfigureAwait(false));
        var now = _time.GetUtcNow();
        var stored = feedback.ToStored(found.Adapter, previous, now);
        var result = await db.ScriptEvaluateAsync(
                FeedbackScript,
                [FeedbackKey(found.Adapter), FeedbackSeqKey(found.Adapter), FeedbackByRequestKey(found.Adapter), FeedbackCounterKey],
                [feedback.Id, JsonSerializer.Serialize(stored, StorageJsonContext.Default.Feedback), found.Position.Milliseconds])
            .WaitAsync(cancellationToken).ConfigureAwait(false);
        var created = (long)result[0] == 1;
        return new FeedbackResult(created ? FeedbackStatus.Created : FeedbackStatus.Updated, stored);
    }

    /// <inheritdoc />
    public async Task<FeedbackCount> CountFeedbackSinceAsync(string adapter, string? cursor, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var after = FeedbackCursor.Parse(cursor);
        var db = Database;

        // Read the high-water mark first: feedback stored later gets a larger sequence and is counted next time.
        var high = (long?)await db.StringGetAsync(FeedbackCounterKey).WaitAsync(cancellationToken).ConfigureAwait(false) ?? 0;
        var count = high <= after
            ? 0
            : await db.SortedSetLengthAsync(FeedbackSeqKey(adapter), after, high, Exclude.Start).WaitAsync(cancellationToken).ConfigureAwait(false);
        return new FeedbackCount(count, FeedbackCursor.Format(Math.Max(high, after)));
    }

    /// <inheritdoc />
    public async Task<TrimResult> TrimAsync(CancellationToken cancellationToken = default)
    {
        var db = Database;
        long? cutoffMs = _options.MaxAge is { } age ? LogPosition.MillisecondsOf(_time.GetUtcNow() - age) : null;
        long entriesRemoved = 0, feedbackRemoved = 0;
        var names = await db.SetMembersAsync(AdaptersKey).WaitAsync(cancellationToken).ConfigureAwait(false);
        foreach (var name in names)
        {
            var adapter = (string)name!;
            var stream = StreamKey(adapter);
            if (_options.MaxEntriesPerStream is { } maxEntries)
            {
                entriesRemoved += await db.StreamTrimAsync(stream, maxEntries, useApproximateMaxLength: false)
                    .WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            if (cutoffMs is { } cutoff)
            {
                entriesRemoved += await db.StreamTrimByMinIdAsync(stream, new LogPosition(cutoff, 0).ToString(), useApproximateMaxLength: false)
                    .WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            // Feedback whose request is older than the oldest retained entry lost its request.
            var first = await db.StreamRangeAsync(stream, "-", "+", 1).WaitAsync(cancellationToken).ConfigureAwait(false);
            long? boundMs = first.Length > 0 ? LogPosition.Parse(first[0].Id!).Milliseconds : cutoffMs;
            if (boundMs is not { } bound)
            {
                continue;
            }

            var orphans = await db.SortedSetRangeByScoreAsync(FeedbackByRequestKey(adapter), double.NegativeInfinity, bound, Exclude.Stop)
                .WaitAsync(cancellationToken).ConfigureAwait(false);
            if (orphans.Length == 0)
            {
                continue;
            }

            var transaction = db.CreateTransaction();
            _ = transaction.HashDeleteAsync(FeedbackKey(adapter), orphans);
            _ = transaction.SortedSetRemoveAsync(FeedbackSeqKey(adapter), orphans);
            _ = transaction.SortedSetRemoveAsync(FeedbackByRequestKey(adapter), orphans);
            await transaction.ExecuteAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            feedbackRemoved += orphans.Length;
        }

        if (entriesRemoved > 0 || feedbackRemoved > 0)
        {
            _logger.LogDebug("Trimmed {Entries} traffic entries and {Feedback} feedback records.", entriesRemoved, feedbackRemoved);
        }

        return new TrimResult(entriesRemoved, feedbackRemoved);
    }

    private async Task<(string Adapter, LogPosition Position, TrafficEntry Entry)?> LocateAsync(string id)
    {
        var db = Database;
        var reference = (string?)await db.StringGetAsync(IdKey(id)).ConfigureAwait(false);
        var separator = reference?.IndexOf('\n', StringComparison.Ordinal) ?? -1;
        if (separator <= 0 || !LogPosition.TryParse(reference![(separator + 1)..], out var position))
        {
            return null;
        }

        var adapter = reference[..separator];
        var at = position.ToString();
        var entries = await db.StreamRangeAsync(StreamKey(adapter), at, at, 1).ConfigureAwait(false);
        if (entries.Length == 0)
        {
            return null; // Trimmed; the index key outlives count-trimmed entries until it expires.
        }

        var entry = RedisEntryCodec.Decode(entries[0].Values);
        return entry.Id == id ? (adapter, position, entry) : null;
    }

    private static Feedback? DecodeFeedback(RedisValue json) =>
        json.IsNullOrEmpty ? null : JsonSerializer.Deserialize((string)json!, StorageJsonContext.Default.Feedback);
}

/// <summary>The feedback cursor format shared by the stores: the decimal change sequence.</summary>
internal static class FeedbackCursor
{
    public static long Parse(string? cursor) =>
        cursor is null ? 0
        : long.TryParse(cursor, NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value
        : throw new FormatException($"'{cursor}' is not a feedback cursor.");

    public static string Format(long sequence) => sequence.ToString(CultureInfo.InvariantCulture);
}
