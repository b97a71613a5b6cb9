using System.Collections.Concurrent;
using TuneGateway.Server.Common;

namespace TuneGateway.Server.Gateway;

/// <summary>A worker the gateway knows: where it is, what it last reported, what was routed to it.</summary>
public sealed class WorkerEntry
{
    private readonly ConcurrentDictionary<string, DateTimeOffset> _recentRoutes = new(StringComparer.Ordinal);

    internal WorkerEntry(string url, bool isStatic)
    {
        Url = url;
        IsStatic = isStatic;
    }

    /// <summary>Normalized base URL; also the YARP destination id.</summary>
    public string Url { get; }
    /// <summary>Configured with --workers (kept when silent) rather than registered at runtime.</summary>
    public bool IsStatic { get; }
    /// <summary>The last state it reported, or null when unknown (a static worker not heard from).</summary>
    public WorkerState? State { get; internal set; }
    public DateTimeOffset LastSeen { get; internal set; }

    /// <summary>
    /// Notes that a request for <paramref name="adapter"/> was just routed here: until the worker's
    /// own report shows it, routing treats it as resident so that a burst does not spread it.
    /// </summary>
    public void NoteRouted(string adapter) => _recentRoutes[adapter] = DateTimeOffset.UtcNow;

    public bool RecentlyRouted(string adapter, TimeSpan window) =>
        _recentRoutes.TryGetValue(adapter, out var at) && DateTimeOffset.UtcNow - at < window;

    internal void ForgetOldRoutes(TimeSpan window)
    {
        var now = DateTimeOffset.UtcNow;
        foreach (var (adapter, at) in _recentRoutes)
            if (now - at >= window) _recentRoutes.TryRemove(adapter, out _);
    }
}

/// <summary>
/// The gateway's workers: the configured ones and those that registered by pushing their state.
/// Raises <see cref="TopologyChanged"/> when a worker joins or leaves (the proxy configuration is
/// rebuilt); state updates only replace what routing reads.
/// </summary>
public sealed class WorkerRegistry
{
    private readonly ConcurrentDictionary<string, WorkerEntry> _workers = new(StringComparer.OrdinalIgnoreCase);
    private readonly Lock _topologyLock = new();

    public WorkerRegistry(GatewayOptions options)
    {
        foreach (string url in options.Workers) _workers[Normalize(url)] = new WorkerEntry(Normalize(url), isStatic: true);
    }

    /// <summary>Raised (outside locks) after a worker joined or left.</summary>
    public event Action? TopologyChanged;

    public IReadOnlyList<WorkerEntry> All => _workers.Values.OrderBy(w => w.Url, StringComparer.Ordinal).ToArray();

    public WorkerEntry? Find(string destinationId) => _workers.GetValueOrDefault(destinationId);

    /// <summary>Records a report; a worker not known yet joins the pool.</summary>
    public WorkerEntry Report(WorkerState state)
    {
        string url = Normalize(state.Url);
        bool added = false;
        WorkerEntry entry;
        lock (_topologyLock)
        {
            if (!_workers.TryGetValue(url, out entry!))
            {
                entry = new WorkerEntry(url, isStatic: false);
                _workers[url] = entry;
                added = true;
            }
            // A worker that re-registers under a new URL replaces its old entry.
            foreach (var other in _workers.Values)
            {
                if (other != entry && !other.IsStatic && other.State?.WorkerId == state.WorkerId && _workers.TryRemove(other.Url, out _)) added = true;
            }
        }
        entry.State = state with { Url = url };
        entry.LastSeen = DateTimeOffset.UtcNow;
        if (added) TopologyChanged?.Invoke();
        return entry;
    }

    /// <summary>A worker withdrew (graceful shutdown): a registered one leaves, a static one becomes unknown.</summary>
    public bool Remove(string workerIdOrUrl)
    {
        bool removed = false;
        // Most callers name a worker id, which is no URL: then only ids match.
        string? url = TryNormalize(workerIdOrUrl);
        lock (_topologyLock)
        {
            foreach (var entry in _workers.Values.Where(w => w.State?.WorkerId == workerIdOrUrl || (url is not null && w.Url.Equals(url, StringComparison.OrdinalIgnoreCase))).ToArray())
            {
                if (entry.IsStatic) entry.State = null;
                else removed |= _workers.TryRemove(entry.Url, out _);
            }
        }
        if (removed) TopologyChanged?.Invoke();
        return removed;
    }

    /// <summary>Drops registered workers silent for longer than <paramref name="staleAfter"/>; forgets static ones' state.</summary>
    public void Prune(TimeSpan staleAfter, TimeSpan routeWindow)
    {
        var now = DateTimeOffset.UtcNow;
        bool removed = false;
        lock (_topologyLock)
        {
            foreach (var entry in _workers.Values.ToArray())
            {
                entry.ForgetOldRoutes(routeWindow);
                if (entry.State is null || now - entry.LastSeen < staleAfter) continue;
                if (entry.IsStatic) entry.State = null;
                else removed |= _workers.TryRemove(entry.Url, out _);
            }
        }
        if (removed) TopologyChanged?.Invoke();
    }

    /// <summary>The base models of the workers that reported one.</summary>
    public IReadOnlySet<string> BaseModels() =>
        _workers.Values.Select(w => w.State?.BaseModel).Where(m => !string.IsNullOrEmpty(m)).Select(m => m!).ToHashSet(StringComparer.Ordinal);

    public static string Normalize(string url) => TryNormalize(url) ?? throw new ArgumentException($"'{url}' is not an http(s) URL.", nameof(url));

    /// <summary>The URL without query and trailing slash; null when it is no http(s) URL.</summary>
    public static string? TryNormalize(string url) =>
        Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
            ? uri.GetLeftPart(UriPartial.Path).TrimEnd('/')
            : null;
}
