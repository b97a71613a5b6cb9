using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using TuneGateway.Engine.Lora;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>
/// The worker's identity and current <see cref="WorkerState"/>, read from the scheduler's and the
/// adapter manager's statistics; also publishes them as gauges of the <c>TuneGateway.Server</c> meter.
/// </summary>
public sealed class WorkerStatus
{
    private readonly EngineHost _host;
    private readonly WorkerOptions _options;
    private readonly IServer _server;
    private readonly Meter _meter;
    private string? _url;

    public WorkerStatus(EngineHost host, WorkerOptions options, IServer server, IMeterFactory meters)
    {
        _host = host;
        _options = options;
        _server = server;
        // The factory owns (and disposes) the meter with the service provider.
        _meter = meters.Create(ServerTelemetry.Name);
        _meter.CreateObservableGauge("tunegw.worker.queue_depth", () => Stats()?.Waiting ?? 0, "{request}", "Requests waiting for a batch slot.");
        _meter.CreateObservableGauge("tunegw.worker.running", () => Stats()?.Running ?? 0, "{sequence}", "Sequences in the running batch.");
        _meter.CreateObservableGauge("tunegw.worker.kv_cache_usage", () => Stats()?.CacheUsage ?? 0, "1", "Share of the KV cache in use.");
        _meter.CreateObservableGauge("tunegw.worker.kv_cache_blocks", () =>
        {
            var stats = Stats();
            return stats is null ? [] : new[]
            {
                new Measurement<int>(stats.KvBlocksUsed, new KeyValuePair<string, object?>("state", "used")),
                new Measurement<int>(stats.KvBlocks - stats.KvBlocksUsed, new KeyValuePair<string, object?>("state", "free")),
            };
        }, "{block}", "KV cache blocks held by running sequences, and free (cached or never used).");
        _meter.CreateObservableGauge("tunegw.worker.prefix_cache_blocks", () => Stats()?.PrefixCachedBlocks ?? 0, "{block}", "KV cache blocks the prefix cache can hand to a later request (held or evictable).");
        _meter.CreateObservableGauge("tunegw.worker.adapters_resident", () =>
        {
            var stats = _host.Engine?.Adapters.Stats;
            return stats is null ? [] : new[]
            {
                new Measurement<int>(stats.DeviceResident, new KeyValuePair<string, object?>("tier", "device")),
                new Measurement<int>(stats.HostResident, new KeyValuePair<string, object?>("tier", "host")),
            };
        }, "{adapter}", "Adapters resident, by tier.");
        _meter.CreateObservableCounter("tunegw.worker.adapter_loads", () => _host.Engine?.Adapters.Stats.Loads ?? 0, "{load}", "Adapter loads from disk.");
        _meter.CreateObservableCounter("tunegw.worker.adapter_evictions", () => _host.Engine?.Adapters.Stats.Evictions ?? 0, "{eviction}", "Adapters evicted from a tier.");
        _meter.CreateObservableCounter("tunegw.worker.adapter_residency", () =>
        {
            var stats = _host.Engine?.Adapters.Stats;
            return stats is null ? [] : new[]
            {
                new Measurement<long>(stats.Hits, new KeyValuePair<string, object?>("result", "hit")),
                new Measurement<long>(stats.Misses, new KeyValuePair<string, object?>("result", "miss")),
            };
        }, "{lookup}", "Adapter lookups by whether the adapter was already resident (hit) or had to be loaded (miss).");
    }

    private Engine.Serving.SchedulerStats? Stats() => _host.Engine?.Scheduler.Stats;

    /// <summary>The URL the gateway forwards to: --advertise-url, else the first listening address.</summary>
    public string Url => _url ??= ComputeUrl();

    public string WorkerId => _options.WorkerId ?? $"{Environment.MachineName}:{new Uri(Url).Port}";

    private string ComputeUrl()
    {
        if (_options.AdvertiseUrl is { } advertised) return advertised.TrimEnd('/');
        var address = _server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("The worker is not listening yet.");
        var uri = new Uri(address.Replace("://+", "://localhost", StringComparison.Ordinal).Replace("://*", "://localhost", StringComparison.Ordinal));
        string host = uri.Host is "0.0.0.0" or "[::]" or "::" ? Environment.MachineName : uri.Host;
        return $"{uri.Scheme}://{(host.Contains(':') && !host.StartsWith('[') ? $"[{host}]" : host)}:{uri.Port}{_options.PathPrefix}";
    }

    public WorkerState Snapshot()
    {
        var engine = _host.Engine;
        if (engine is null) return new WorkerState { WorkerId = WorkerId, Url = Url };
        var stats = engine.Scheduler.Stats;
        var adapters = engine.Adapters.List();
        int maxLoras = engine.Adapters.Options.MaxLoras;
        int resident = adapters.Count(a => a.Residency == AdapterResidency.Device);
        return new WorkerState
        {
            WorkerId = WorkerId,
            Url = Url,
            BaseModel = engine.ModelId,
            Ready = _host.IsReady,
            MaxModelLen = engine.MaxModelLength,
            ResidentAdapters = adapters.Where(a => a.Residency == AdapterResidency.Device).Select(a => a.Name).ToArray(),
            LoadedAdapters = adapters.Select(a => a.Name).ToArray(),
            AvailableAdapters = engine.Adapters.Discover().Select(a => a.Name).ToArray(),
            MaxLoras = maxLoras,
            FreeAdapterSlots = Math.Max(0, maxLoras - resident),
            QueueDepth = stats.Waiting,
            Running = stats.Running,
            Slots = stats.Slots,
            KvCacheUsage = Math.Round(stats.CacheUsage, 4),
            Timestamp = DateTimeOffset.UtcNow,
        };
    }
}
