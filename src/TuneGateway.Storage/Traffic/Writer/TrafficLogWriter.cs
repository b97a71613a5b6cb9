using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace TuneGateway.Storage;

/// <summary>
/// The traffic log's front door and its background writer. <see cref="Record"/> applies opt-out and
/// sampling and puts the entry in a bounded in-memory queue; the writer loop redacts entries and sends
/// them to the <see cref="ITrafficStore"/> in batches.
/// </summary>
/// <remarks>
/// <para>When the store is unreachable (not connected, failing, or slower than
/// <see cref="TrafficLogOptions.WriteTimeout"/>) the batch goes to a local spill file instead, and the
/// store is probed again with exponential back-off (0.1 s to 5 s). Once it answers, new batches go to it
/// directly and the spill is replayed, oldest first, between them. Store appends are idempotent by id, so
/// a batch whose outcome was unknown is simply replayed.</para>
/// <para>Entries are lost only when the queue is full (<c>dropped{reason=queue_full}</c>) or the spill
/// has reached <see cref="TrafficLogOptions.SpillMaxBytes"/> (<c>dropped{reason=spill_full}</c>); both are
/// counted and logged (at most every 10 s).</para>
/// </remarks>
public sealed class TrafficLogWriter : BackgroundService, ITrafficLog
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan DropLogInterval = TimeSpan.FromSeconds(10);

    private readonly ITrafficStore _store;
    private readonly TrafficLogOptions _options;
    private readonly TrafficPrivacyPolicy _policy;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Channel<TrafficEntry> _queue;
    private readonly SpillQueue _spill;
    private readonly TrafficLogMetrics _metrics;
    private readonly ConcurrentDictionary<string, byte> _pending = new(StringComparer.Ordinal);
    private readonly List<TrafficEntry> _batch;
    private volatile bool _stopped;
    private bool _spillBroken;
    private bool _outage;
    private int _failures;
    private DateTimeOffset _retryAt = DateTimeOffset.MinValue;
    private DateTimeOffset _nextTrim;
    private Task _trimming = Task.CompletedTask;
    private long _lastDropLogTicks;
    private long _droppedAtLastLog;
    private int _loopStarted;

    // Entries taken from the queue whose write (or spill) has not finished: part of the backlog. Taking a
    // batch and counting it happen under one lock, so a statistics reader never sees an entry in neither place.
    private readonly Lock _inHandGate = new();
    private int _inHand;

    /// <summary>Creates the writer; it starts draining when the host starts it.</summary>
    public TrafficLogWriter(
        ITrafficStore store,
        IOptions<TrafficLogOptions> options,
        TrafficPrivacyPolicy policy,
        TimeProvider? timeProvider = null,
        ILogger<TrafficLogWriter>? logger = null,
        IMeterFactory? meterFactory = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _options = options.Value;
        _policy = policy ?? throw new ArgumentNullException(nameof(policy));
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _queue = Channel.CreateBounded<TrafficEntry>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _spill = new SpillQueue(_options.EffectiveSpillDirectory, _options.SpillMaxBytes, _logger);
        _metrics = new TrafficLogMetrics(meterFactory, () => _queue.Reader.Count, () => _spill.PendingEntries);
        _batch = new List<TrafficEntry>(_options.BatchSize);
    }

    /// <summary>The meter the counters are published on.</summary>
    internal Meter Meter => _metrics.Meter;

    /// <inheritdoc />
    public TrafficLogDecision Record(TrafficEntry entry)
    {
        try
        {
            string? error = "the entry is null";
            if (entry is null || !entry.IsValid(out error))
            {
                _logger.LogDebug("Rejected a traffic entry: {Error}", error);
                _metrics.Rejected();
                return TrafficLogDecision.Rejected;
            }

            if (_policy.IsOptedOut(entry.ApiKeyId))
            {
                _metrics.OptedOut();
                return TrafficLogDecision.OptedOut;
            }

            if (!_policy.IsSampled(entry.Id))
            {
                _metrics.SampledOut();
                return TrafficLogDecision.SampledOut;
            }

            var tracked = _pending.TryAdd(entry.Id, 0);
            if (_queue.Writer.TryWrite(entry))
            {
                _metrics.Enqueued();
                return TrafficLogDecision.Accepted;
            }

            if (tracked)
            {
                _pending.TryRemove(entry.Id, out _);
            }

            if (_stopped)
            {
                _metrics.DroppedOther(1);
            }
            else
            {
                _metrics.DroppedQueueFull();
            }

            LogDrops();
            return TrafficLogDecision.Dropped;
        }
        catch (Exception ex)
        {
            // The request path must never see an exception from logging.
            _metrics.DroppedOther(1);
            try
            {
                _logger.LogError(ex, "Could not queue a traffic entry.");
            }
            catch (Exception)
            {
                // Nothing more can be done; the entry is counted as dropped.
            }

            return TrafficLogDecision.Dropped;
        }
    }

    /// <inheritdoc />
    public bool IsPending(string id) => id is not null && _pending.ContainsKey(id);

    /// <inheritdoc />
    public TrafficLogStatistics GetStatistics()
    {
        long queued;
        lock (_inHandGate)
        {
            queued = _queue.Reader.Count + _inHand;
        }

        return _metrics.Snapshot(queued, _spill.PendingEntries);
    }

    /// <summary>Stops accepting entries, then drains the queue into the store (or the spill) before returning.</summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopped = true;
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken).ConfigureAwait(false);

        // Since .NET 10 the base class starts ExecuteAsync with Task.Run and the stopping token, so a stop
        // that comes right after the start can cancel it before it runs; then the queue is drained here.
        if (Interlocked.Exchange(ref _loopStarted, 1) == 0)
        {
            await RunAsync(new CancellationToken(canceled: true)).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        _stopped = true;
        _queue.Writer.TryComplete();
        base.Dispose();
        _spill.Dispose();
        _metrics.Dispose();
    }

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Interlocked.Exchange(ref _loopStarted, 1) == 0 ? RunAsync(stoppingToken) : Task.CompletedTask;

    /// <summary>The writer loop: runs until the queue is closed and drained.</summary>
    private async Task RunAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        try
        {
            _spill.Open();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _spillBroken = true;
            _logger.LogError(ex, "The spill directory {Directory} is unusable; entries that cannot reach the store will be dropped.", _options.EffectiveSpillDirectory);
        }

        _nextTrim = _time.GetUtcNow() + _options.TrimInterval;
        while (await WaitForWorkAsync(stoppingToken).ConfigureAwait(false))
        {
            _batch.Clear();
            lock (_inHandGate)
            {
                while (_batch.Count < _options.BatchSize && _queue.Reader.TryRead(out var entry))
                {
                    _batch.Add(entry);
                }

                _inHand = _batch.Count;
            }

            try
            {
                if (_batch.Count > 0)
                {
                    await WriteAsync(_batch).ConfigureAwait(false);
                    _batch.Clear();
                    Volatile.Write(ref _inHand, 0);
                }

                if (!stoppingToken.IsCancellationRequested)
                {
                    await ReplayAsync().ConfigureAwait(false);
                    StartTrimIfDue();
                }
            }
            catch (Exception ex)
            {
                // A bug must not stop the host (an unhandled BackgroundService exception would); a batch in hand is lost and counted.
                _logger.LogError(ex, "The traffic log writer failed; {Count} entries in hand are dropped.", _batch.Count);
                _metrics.DroppedOther(_batch.Count);
                Forget(_batch);
            }
            finally
            {
                Volatile.Write(ref _inHand, 0);
            }
        }

        await _trimming.ConfigureAwait(false);
        if (_spill.HasPending)
        {
            _logger.LogInformation("Stopping with {Entries} traffic entries in the spill; they are replayed on the next start.", _spill.PendingEntries);
        }
    }

    private bool StoreReady => _store.IsAvailable && _time.GetUtcNow() >= _retryAt;

    /// <summary>Waits until there is something to do; false once the queue is closed and empty.</summary>
    private async Task<bool> WaitForWorkAsync(CancellationToken stoppingToken)
    {
        var reader = _queue.Reader;
        if (reader.TryPeek(out _))
        {
            return true;
        }

        if (stoppingToken.IsCancellationRequested || _stopped)
        {
            return await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false);
        }

        var now = _time.GetUtcNow();
        var wakeAt = _nextTrim;
        if (_spill.HasPending && !_spillBroken)
        {
            var retryAt = _store.IsAvailable ? _retryAt : now + MinBackoff;
            wakeAt = retryAt < wakeAt ? retryAt : wakeAt;
        }

        if (wakeAt <= now)
        {
            return true;
        }

        using var timeout = new CancellationTokenSource(wakeAt - now, _time);
        try
        {
            return await reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            return true;
        }
    }

    private async Task WriteAsync(List<TrafficEntry> batch)
    {
        var prepared = new List<TrafficEntry>(batch.Count);
        foreach (var entry in batch)
        {
            prepared.Add(_policy.Prepare(entry));
        }

        if (StoreReady)
        {
            try
            {
                await AppendWithTimeoutAsync(prepared).ConfigureAwait(false);
                _metrics.Written(prepared.Count);
                Forget(prepared);
                StoreSucceeded();
                return;
            }
            catch (Exception ex)
            {
                StoreFailed(ex);
            }
        }
        else if (!_outage)
        {
            StoreFailed(null);
        }

        Spill(prepared);
    }

    private void Spill(List<TrafficEntry> entries)
    {
        List<TrafficEntry> refused;
        if (_spillBroken)
        {
            refused = entries;
        }
        else
        {
            try
            {
                refused = _spill.Append(entries);
                _metrics.Spilled(entries.Count - refused.Count);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _logger.LogError(ex, "Could not write {Count} traffic entries to the spill.", entries.Count);
                refused = entries;
            }
        }

        if (refused.Count > 0)
        {
            _metrics.DroppedSpillFull(refused.Count);
            Forget(refused);
            LogDrops();
        }
    }

    private async Task ReplayAsync()
    {
        while (_spill.HasPending && !_spillBroken && StoreReady && _queue.Reader.Count < _options.BatchSize)
        {
            SpillChunk chunk;
            try
            {
                chunk = _spill.Peek(_options.BatchSize);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _spillBroken = true;
                _logger.LogError(ex, "Could not read the spill; {Entries} spilled entries are lost.", _spill.PendingEntries);
                _metrics.DroppedOther((int)Math.Min(int.MaxValue, _spill.PendingEntries));
                return;
            }

            if (chunk.Entries.Count == 0 && chunk.Unreadable == 0)
            {
                // The spill claims pending entries but has none to read; stop rather than spin.
                _spillBroken = true;
                _logger.LogError("The spill in {Directory} is inconsistent; {Entries} spilled entries are abandoned.", _options.EffectiveSpillDirectory, _spill.PendingEntries);
                _metrics.DroppedOther((int)Math.Min(int.MaxValue, _spill.PendingEntries));
                return;
            }

            if (chunk.Entries.Count > 0)
            {
                try
                {
                    await AppendWithTimeoutAsync(chunk.Entries).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    StoreFailed(ex);
                    return;
                }
            }

            _spill.Acknowledge(chunk);
            _metrics.Replayed(chunk.Entries.Count);
            _metrics.DroppedOther(chunk.Unreadable);
            Forget(chunk.Entries);
            StoreSucceeded();
            if (!_spill.HasPending)
            {
                _logger.LogInformation("Replayed every spilled traffic entry.");
            }
        }
    }

    private async Task AppendWithTimeoutAsync(List<TrafficEntry> entries)
    {
        var append = _store.AppendAsync(entries);
        try
        {
            await append.WaitAsync(_options.WriteTimeout, _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The append may still complete; its outcome is observed so that a late failure is not unobserved.
            _ = append.ContinueWith(static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            throw;
        }
    }

    private void StartTrimIfDue()
    {
        var now = _time.GetUtcNow();
        if (now < _nextTrim)
        {
            return;
        }

        // Reschedule even when this round is skipped (store down, previous trim still running), so that the
        // loop does not wake up for it again at once.
        _nextTrim = now + _options.TrimInterval;
        if (!_trimming.IsCompleted || !StoreReady)
        {
            return;
        }

        _trimming = Task.Run(async () =>
        {
            try
            {
                var result = await _store.TrimAsync().ConfigureAwait(false);
                if (result.EntriesRemoved > 0 || result.FeedbackRemoved > 0)
                {
                    _logger.LogDebug("Trimmed {Entries} traffic entries and {Feedback} feedback records.", result.EntriesRemoved, result.FeedbackRemoved);
                }
            }
            catch (Exception ex)
            {
                _logger.LogWarning(ex, "Trimming the traffic log failed; retrying in {Interval}.", _options.TrimInterval);
            }
        });
    }

    private void StoreSucceeded()
    {
        if (_outage)
        {
            _outage = false;
            _logger.LogInformation("The traffic store is reachable again; replaying {Entries} spilled entries.", _spill.PendingEntries);
        }

        _failures = 0;
        _retryAt = DateTimeOffset.MinValue;
    }

    private void StoreFailed(Exception? error)
    {
        _failures = Math.Min(_failures + 1, 16);
        var backoff = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, MinBackoff.Ticks << (_failures - 1)));
        _retryAt = _time.GetUtcNow() + backoff;
        if (!_outage)
        {
            _outage = true;
            _logger.LogWarning(error, "The traffic store is unavailable; spilling entries to {Directory} until it is back.", _options.EffectiveSpillDirectory);
        }
    }

    private void Forget(List<TrafficEntry> entries)
    {
        foreach (var entry in entries)
        {
            _pending.TryRemove(entry.Id, out _);
        }
    }

    private void LogDrops()
    {
        var now = _time.GetUtcNow().UtcTicks;
        var last = Interlocked.Read(ref _lastDropLogTicks);
        if (now - last < DropLogInterval.Ticks || Interlocked.CompareExchange(ref _lastDropLogTicks, now, last) != last)
        {
            return;
        }

        var total = _metrics.TotalDropped;
        var since = total - Interlocked.Exchange(ref _droppedAtLastLog, total);
        var statistics = GetStatistics();
        _logger.LogWarning(
            "Dropped {Dropped} traffic entries since the last report ({Total} in all: queue full {QueueFull}, spill full {SpillFull}, other {Other}).",
            since,
            total,
            statistics.DroppedQueueFull,
            statistics.DroppedSpillFull,
            statistics.DroppedOther);
    }
}
