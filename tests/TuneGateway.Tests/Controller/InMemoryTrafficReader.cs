using TuneGateway.Storage;

namespace TuneGateway.Tests.Controller;

/// <summary>A traffic log in a list, paged like the real stores (a fake: for unit tests of what reads it).</summary>
internal sealed class InMemoryTrafficReader(IEnumerable<TrafficRecord> records, int pageSize = 3) : ITrafficReader
{
    private readonly List<TrafficRecord> _records = [.. records];

    public InMemoryTrafficReader(int pageSize = 3) : this([], pageSize)
    {
    }

    public void Add(IEnumerable<TrafficRecord> records)
    {
        lock (_records) _records.AddRange(records);
    }

    public Task<TrafficPage> QueryAsync(TrafficQuery query, CancellationToken cancellationToken = default)
    {
        List<TrafficRecord> matching;
        lock (_records)
        {
            matching = _records.Where(r => r.Entry.Adapter == query.Adapter && (query.Since is null || r.Entry.Timestamp >= query.Since)
                    && (query.Until is null || r.Entry.Timestamp <= query.Until))
                .Where(r => query.After is null || r.Position.CompareTo(query.After.Value) > 0).ToList();
        }
        var page = matching.Take(pageSize).ToList();
        return Task.FromResult(new TrafficPage(page, matching.Count > pageSize ? page[^1].Position.ToString() : null));
    }

    public Task<TrafficRecord?> GetAsync(string id, CancellationToken cancellationToken = default) => throw new NotSupportedException();
    public Task<IReadOnlyList<AdapterTrafficSummary>> ListAdaptersAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();
    public Task<FeedbackCount> CountFeedbackSinceAsync(string adapter, string? cursor, CancellationToken cancellationToken = default) => throw new NotSupportedException();
}
