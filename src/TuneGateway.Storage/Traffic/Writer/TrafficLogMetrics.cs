using System.Diagnostics.Metrics;

namespace TuneGateway.Storage;

/// <summary>
/// The writer's counters, kept as plain fields (for <see cref="TrafficLogStatistics"/>) and published as
/// observable instruments on the <c>TuneGateway.Storage</c> meter:
/// <c>tunegw.traffic.backlog</c> (gauge, <c>location</c> = memory | spill),
/// <c>tunegw.traffic.enqueued</c>, <c>tunegw.traffic.written</c>, <c>tunegw.traffic.spilled</c>,
/// <c>tunegw.traffic.replayed</c>, <c>tunegw.traffic.dropped</c> (<c>reason</c> = queue_full | spill_full | other)
/// and <c>tunegw.traffic.skipped</c> (<c>reason</c> = sampled_out | opted_out | rejected).
/// </summary>
internal sealed class TrafficLogMetrics : IDisposable
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "TuneGateway.Storage";

    private readonly bool _ownsMeter;
    private long _enqueued;
    private long _written;
    private long _spilled;
    private long _replayed;
    private long _droppedQueueFull;
    private long _droppedSpillFull;
    private long _droppedOther;
    private long _sampledOut;
    private long _optedOut;
    private long _rejected;

    public TrafficLogMetrics(IMeterFactory? meterFactory, Func<long> queuedInMemory, Func<long> queuedInSpill)
    {
        _ownsMeter = meterFactory is null;
        Meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        const string unit = "{entry}";
        Meter.CreateObservableGauge(
            "tunegw.traffic.backlog",
            () => new[]
            {
                new Measurement<long>(queuedInMemory(), new KeyValuePair<string, object?>("location", "memory")),
                new Measurement<long>(queuedInSpill(), new KeyValuePair<string, object?>("location", "spill")),
            },
            unit,
            "Traffic entries waiting to reach the store.");
        Meter.CreateObservableCounter("tunegw.traffic.enqueued", () => Read(ref _enqueued), unit, "Entries accepted into the queue.");
        Meter.CreateObservableCounter("tunegw.traffic.written", () => Read(ref _written), unit, "Entries written to the store from the queue.");
        Meter.CreateObservableCounter("tunegw.traffic.spilled", () => Read(ref _spilled), unit, "Entries written to the local spill file.");
        Meter.CreateObservableCounter("tunegw.traffic.replayed", () => Read(ref _replayed), unit, "Spilled entries written to the store.");
        Meter.CreateObservableCounter(
            "tunegw.traffic.dropped",
            () => new[]
            {
                new Measurement<long>(Read(ref _droppedQueueFull), new KeyValuePair<string, object?>("reason", "queue_full")),
                new Measurement<long>(Read(ref _droppedSpillFull), new KeyValuePair<string, object?>("reason", "spill_full")),
                new Measurement<long>(Read(ref _droppedOther), new KeyValuePair<string, object?>("reason", "other")),
            },
            unit,
            "Entries lost.");
        Meter.CreateObservableCounter(
            "tunegw.traffic.skipped",
            () => new[]
            {
                new Measurement<long>(Read(ref _sampledOut), new KeyValuePair<string, object?>("reason", "sampled_out")),
                new Measurement<long>(Read(ref _optedOut), new KeyValuePair<string, object?>("reason", "opted_out")),
                new Measurement<long>(Read(ref _rejected), new KeyValuePair<string, object?>("reason", "rejected")),
            },
            unit,
            "Entries deliberately not logged.");
    }

    public Meter Meter { get; }

    public void Enqueued() => Interlocked.Increment(ref _enqueued);

    public void Written(int count) => Interlocked.Add(ref _written, count);

    public void Spilled(int count) => Interlocked.Add(ref _spilled, count);

    public void Replayed(int count) => Interlocked.Add(ref _replayed, count);

    public void DroppedQueueFull() => Interlocked.Increment(ref _droppedQueueFull);

    public void DroppedSpillFull(int count) => Interlocked.Add(ref _droppedSpillFull, count);

    public void DroppedOther(int count) => Interlocked.Add(ref _droppedOther, count);

    public void SampledOut() => Interlocked.Increment(ref _sampledOut);

    public void OptedOut() => Interlocked.Increment(ref _optedOut);

    public void Rejected() => Interlocked.Increment(ref _rejected);

    public long TotalDropped => Read(ref _droppedQueueFull) + Read(ref _droppedSpillFull) + Read(ref _droppedOther);

    public TrafficLogStatistics Snapshot(long queuedInMemory, long queuedInSpill) => new(
        Read(ref _enqueued),
        Read(ref _written),
        Read(ref _spilled),
        Read(ref _replayed),
        Read(ref _droppedQueueFull),
        Read(ref _droppedSpillFull),
        Read(ref _droppedOther),
        Read(ref _sampledOut),
        Read(ref _optedOut),
        Read(ref _rejected),
        queuedInMemory,
        queuedInSpill);

    public void Dispose()
    {
        if (_ownsMeter)
        {
            Meter.Dispose();
        }
    }

    private static long Read(ref long field) => Interlocked.Read(ref field);
}
