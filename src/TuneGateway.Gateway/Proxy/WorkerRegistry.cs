using System.Collections.Concurrent;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Gateway.Proxy;

/// <summary>How a worker joined the pool, which decides the credential the gateway presents to it.</summary>
public enum WorkerTrust
{
    /// <summary>Registered by a caller that proved nothing (a gateway in open mode): receives no credential.</summary>
    Unverified,
    /// <summary>Registered with a key of the worker role: receives the gateway's worker key.</summary>
    Registered,
    /// <summary>Configured by the operator (<c>--workers</c>): receives the gateway's worker key.</summary>
    Configured,
    /// <summary>serve's in-process worker: receives serve's internal hop key, and nobody can replace or withdraw it.</summary>
    InProcess,
}

/// <summary>What <c>/admin/workers</c> and routing make of a worker.</summary>
public enum WorkerAvailability
{
    /// <summary>Reported ready, recently, and reachable.</summary>
    Ready,
    /// <summary>Not heard from yet, loading, or reported not ready (a failed model load).</summary>
    NotReady,
    /// <summary>Reported ready, but nothing heard for longer than <see cref="GatewayOptions.SilentAfter"/>.</summary>
    Silent,
    /// <summary>The last request forwarded to it failed to connect; cleared by its next report.</summary>
    Unreachable,
}

/// <summary>A registration the registry refuses (the caller may not take that URL or id).</summary>
public sealed class WorkerRegistrationException(string message) : Exception(message);

/// <summary>A worker the gateway knows: where it is, what it last reported, what was routed to it.</summary>
public sealed class WorkerEntry
{
    private readonly ConcurrentDictionary<string, DateTimeOffset> _recentRoutes = new(StringComparer.Ordinal);

    internal WorkerEntry(string url, WorkerTrust trust)
    {
        Url = url;
        Trust = trust;
    }

    /// <summary>Normalized base URL; also the YARP destination id.</summary>
    public string Url { get; }
    /// <summary>How it joined; a registered entry takes the trust of its latest report.</summary>
    public WorkerTrust Trust { get; internal set; }
    /// <summary>Configured with --workers (kept when silent) or serve's own, rather than registered at runtime.</summary>
    public bool IsStatic => Trust is WorkerTrust.Configured or WorkerTrust.InProcess;
    /// <summary>The last state it reported, or null when unknown (a static worker not heard from).</summary>
    public WorkerState? State { get; internal set; }
    public DateTimeOffset LastSeen { get; internal set; }
    /// <summary>When forwarding to it last failed to connect, unless it has reported since.</summary>
    public DateTimeOffset? UnreachableSince { get; internal set; }

    /// <summary>
    /// Notes that a request for <paramref name="adapter"/> was just routed here: until the worker's
    /// own report shows it, routing treats it as resident so that a burst does not spread it.
    /// </summary>
    public void NoteRouted(string adapter) => _recentRoutes[adapter] = DateTimeOffset.UtcNow;

    public bool RecentlyRouted(string adapter, TimeSpan window) =>
        _recentRoutes.TryGetValue(adapter, out var at) && DateTimeOffset.UtcNow - at < window;

    /// <summary>Ready by its own report and not known to be down: what routing considers.</summary>
    public bool IsRoutable => State is { Ready: true } && UnreachableSince is null;

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
    private readonly GatewayOptions _options;
    private readonly TimeProvider _time;

    public WorkerRegistry(GatewayOptions options, TimeProvider? time = null)
    {
        _options = options;
        _time = time ?? TimeProvider.System;
        foreach (string url in options.Workers) _workers[Normalize(url)] = new WorkerEntry(Normalize(url), WorkerTrust.Configured);
    }

    /// <summary>Raised (outside locks) after a worker joined or left.</summary>
    public event Action? TopologyChanged;

    public IReadOnlyList<WorkerEntry> All => _workers.Values.OrderBy(w => w.Url, StringComparer.Ordinal).ToArray();

    /// <summary>The workers routing may use (<see cref="WorkerEntry.IsRoutable"/>).</summary>
    public IReadOnlyList<WorkerEntry> Routable => All.Where(w => w.IsRoutable).ToArray();

    public WorkerEntry? Find(string destinationId) => _workers.GetValueOrDefault(destinationId);

    /// <summary>
    /// Records a report; a worker not known yet joins the pool with <paramref name="trust"/>.
    /// A configured or in-process entry keeps its trust; only serve itself reports for its in-process worker.
    /// </summary>
    /// <exception cref="WorkerRegistrationException">The report claims serve's in-process worker.</exception>
    /// <exception cref="ArgumentException">The URL is not an http(s) URL.</exception>
    public WorkerEntry Report(WorkerState state, WorkerTrust trust = WorkerTrust.Registered)
    {
        string url = Normalize(state.Url);
        bool added = false;
        WorkerEntry entry;
        lock (_topologyLock)
        {
            if (_workers.TryGetValue(url, out entry!))
            {
                if ((entry.Trust == WorkerTrust.InProcess) != (trust == WorkerTrust.InProcess))
                    throw new WorkerRegistrationException($"'{url}' is the address of another kind of worker (serve's own, or a registered one).");
                if (!entry.IsStatic) entry.Trust = trust;
            }
            else
            {
                entry = new WorkerEntry(url, trust);
                _workers[url] = entry;
                added = true;
            }
            // A worker that re-registers under a new URL replaces its old entry (never a configured or in-process one).
            foreach (var other in _workers.Values)
            {
                if (other != entry && !other.IsStatic && other.State?.WorkerId == state.WorkerId && _workers.TryRemove(other.Url, out _)) added = true;
            }
        }
        entry.State = state with { Url = url };
        entry.LastSeen = _time.GetUtcNow();
        entry.UnreachableSince = null;
        if (added) TopologyChanged?.Invoke();
        return entry;
    }

    /// <summary>
    /// A worker withdrew (graceful shutdown), by worker id or URL: a registered one leaves, a
    /// configured one becomes unknown. serve's in-process worker is withdrawn only by serve.
    /// </summary>
    public bool Remove(string workerIdOrUrl, bool inProcess = false)
    {
        // An id is not a URL: compare URLs only when it is one.
        string? url = TryNormalize(workerIdOrUrl);
        bool found = false, removed = false;
        lock (_topologyLock)
        {
            foreach (var entry in _workers.Values.Where(w => w.State?.WorkerId == workerIdOrUrl || (url is not null && w.Url.Equals(url, StringComparison.OrdinalIgnoreCase))).ToArray())
            {
                if ((entry.Trust == WorkerTrust.InProcess) != inProcess) continue;
                found = true;
                if (entry.IsStatic) entry.State = null;
                else removed |= _workers.TryRemove(entry.Url, out _);
            }
        }
        if (removed) TopologyChanged?.Invoke();
        return found;
    }

    /// <summary>Forwarding to <paramref name="destinationId"/> failed to connect: routing leaves it until it reports again.</summary>
    public void MarkUnreachable(string destinationId)
    {
        if (_workers.TryGetValue(destinationId, out var entry)) entry.UnreachableSince ??= _time.GetUtcNow();
    }

    /// <summary>What the gateway makes of <paramref name="entry"/> now.</summary>
    public WorkerAvailability Availability(WorkerEntry entry)
    {
        if (entry.State is not { Ready: true }) return WorkerAvailability.NotReady;
        if (entry.UnreachableSince is not null) return WorkerAvailability.Unreachable;
        return SinceLastReport(entry) > _options.SilentAfter ? WorkerAvailability.Silent : WorkerAvailability.Ready;
    }

    /// <summary>How long since <paramref name="entry"/> last reported, on the registry's clock.</summary>
    public TimeSpan SinceLastReport(WorkerEntry entry) => _time.GetUtcNow() - entry.LastSeen;

    /// <summary>Drops registered workers silent for longer than <paramref name="staleAfter"/>; forgets static ones' state.</summary>
    public void Prune(TimeSpan staleAfter, TimeSpan routeWindow)
    {
        var now = _time.GetUtcNow();
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

    /// <summary>True when some worker reports <paramref name="model"/> as its base model or one of its adapters.</summary>
    public bool Knows(string model) => _workers.Values.Any(w => w.State is { } s
        && (s.BaseModel == model || s.LoadedAdapters.Contains(model) || s.ResidentAdapters.Contains(model)));

    public static string Normalize(string url) => TryNormalize(url) ?? throw new ArgumentException($"'{url}' is not an http(s) URL.", nameof(url));

    /// <summary>The URL without query and trailing slash; null when it is no http(s) URL.</summary>
    public static string? TryNormalize(string url) =>
        Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
            ? uri.GetLeftPart(UriPartial.Path).TrimEnd('/')
            : null;
}
