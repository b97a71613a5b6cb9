using System.Runtime.InteropServices;
using TorchSharp;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Lora;

/// <summary>Residency limits for adapters, in counts and in bytes, for both tiers.</summary>
public sealed record AdapterManagerOptions
{
    /// <summary>Adapters resident on the compute device at once (also the most distinct adapters in one batch).</summary>
    public int MaxLoras { get; init; } = 8;
    /// <summary>Adapters kept in host memory, ready to move to the device.</summary>
    public int MaxCpuLoras { get; init; } = 32;
    public long LoraDeviceMemory { get; init; } = 1L << 30;
    public long LoraHostMemory { get; init; } = 4L << 30;
    public int MaxLoraRank { get; init; } = 64;
    /// <summary>Directory searched by name for adapters a request names but nobody loaded (on-demand loading).</summary>
    public string? LoraDirectory { get; init; }
    /// <summary>How long a listing of the adapter directories (<see cref="AdapterManager.Discover"/>) is reused before they are read again.</summary>
    public TimeSpan DiscoveryInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>At most this many adapters are listed from the directories (the rest still load on demand by name).</summary>
    public int MaxDiscovered { get; init; } = 10_000;
    /// <summary>More directories searched after <see cref="LoraDirectory"/>, in order (serve adds the artifact store).</summary>
    public IReadOnlyList<string> AdditionalLoraDirectories { get; init; } = [];
}

/// <summary>What unloading does to requests still using the adapter.</summary>
public enum UnloadMode
{
    /// <summary>Requests in flight finish on the version they started with.</summary>
    Wait,
    /// <summary>Requests in flight are ended with an error at the next step.</summary>
    Abort,
}

/// <summary>The name a request used is neither loaded nor found under the adapter directory.</summary>
public sealed class UnknownAdapterException(string name, string? message = null) : Exception(message ?? $"The model '{name}' does not exist.")
{
    public string Name { get; } = name;
}

/// <summary>An adapter found under the adapter directories, loadable on demand by <see cref="Name"/>.</summary>
public sealed record DiscoveredAdapter(string Name, string Path);

/// <summary>Where an adapter version's weights are.</summary>
public enum AdapterResidency
{
    Disk,
    Host,
    Device,
}

/// <summary>A snapshot of one adapter, for listings and metrics.</summary>
public sealed record AdapterInfo(string Name, string Path, AdapterResidency Residency, int Rank, long Bytes, int ActiveSequences, DateTimeOffset LoadedAt, string? Checksum);

/// <summary>Counters of the residency machinery, for metrics.</summary>
public sealed record AdapterStats(int DeviceResident, long DeviceBytes, int HostResident, long HostBytes, long Loads, long DeviceLoads, long Evictions, long Hits, long Misses);

/// <summary>
/// One loaded version of a named adapter. Requests hold it through an <see cref="AdapterLease"/>
/// for their whole life, so a request finishes on the version it started with even if the name is
/// replaced or unloaded meanwhile; the weights are freed when the last lease ends.
/// </summary>
public sealed class AdapterVersion
{
    private static long _nextId;

    internal AdapterVersion(string name, string path)
    {
        Name = name;
        Path = path;
        Id = Interlocked.Increment(ref _nextId);
    }

    public long Id { get; }
    public string Name { get; }
    public string Path { get; }
    public DateTimeOffset LoadedAt { get; } = DateTimeOffset.UtcNow;
    internal LoraAdapter? Host { get; set; }
    internal LoraAdapter? OnDevice { get; set; }
    internal Task? Loading { get; set; }
    internal string? Failure { get; set; }
    internal long Bytes { get; set; }
    internal int Rank { get; set; }
    internal string? Checksum { get; set; }
    internal int Leases { get; set; }
    internal int Active { get; set; }
    internal long LastUsed { get; set; }
    internal bool Retired { get; set; }
    /// <summary>Set when the adapter was unloaded with <see cref="UnloadMode.Abort"/>.</summary>
    public bool Aborted { get; internal set; }
}

/// <summary>A request's hold on an adapter version; dispose it when the request ends.</summary>
public sealed class AdapterLease : IDisposable
{
    private AdapterManager? _owner;

    internal AdapterLease(AdapterManager owner, AdapterVersion version)
    {
        _owner = owner;
        Version = version;
    }

    public AdapterVersion Version { get; }

    public void Dispose() => Interlocked.Exchange(ref _owner, null)?.Release(Version);
}

/// <summary>What the scheduler may do with a waiting request's adapter this step.</summary>
public enum AdapterReadiness
{
    Ready,
    Loading,
    Failed,
}

/// <summary>
/// Owns adapter weights: named versions, two residency tiers (host memory and the compute
/// device) bounded by count and by bytes with LRU eviction of adapters no running request uses,
/// loading from disk on background threads so a slow load never stalls decoding, atomic
/// replacement, and the per-step working sets of active adapters.
/// </summary>
public sealed class AdapterManager : IDisposable
{
    private readonly CausalLanguageModel _model;
    private readonly AdapterManagerOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, AdapterVersion> _current = new(StringComparer.Ordinal);
    private readonly HashSet<AdapterVersion> _retired = [];
    private readonly Dictionary<string, LoraWorkingSet> _workingSets = new(StringComparer.Ordinal);
    private readonly LinkedList<string> _workingSetOrder = new();
    /// <summary>
    /// Names unloaded by request: not found on demand under the adapter directories any more, so
    /// that an unload sticks until the adapter is explicitly loaded again.
    /// </summary>
    private readonly HashSet<string> _withdrawn = new(StringComparer.Ordinal);
    private (DateTimeOffset At, IReadOnlyList<DiscoveredAdapter> Adapters)? _discovered;
    private long _clock;
    private long _loads, _deviceLoads, _evictions, _hits, _misses;

    public AdapterManager(CausalLanguageModel model, AdapterManagerOptions? options = null, ILogger? logger = null)
    {
        _model = model;
        _options = options ?? new AdapterManagerOptions();
        _logger = logger ?? NullLogger.Instance;
        if (_options.MaxLoras < 1) throw new ArgumentOutOfRangeException(nameof(options), "--max-loras must be at least 1.");
        if (_options.MaxCpuLoras < _options.MaxLoras) throw new ArgumentOutOfRangeException(nameof(options), "--max-cpu-loras must be at least --max-loras.");
    }

    public AdapterManagerOptions Options => _options;

    /// <summary>Raised (outside the lock) when an adapter becomes ready on the device or fails to load.</summary>
    public event Action? StateChanged;

    private bool DeviceIsHost => _model.Device.type == DeviceType.CPU;

    /// <summary>
    /// Loads an adapter from <paramref name="path"/> under <paramref name="name"/>, replacing any
    /// version already loaded under that name once the new one has fully validated. A failed load
    /// changes nothing.
    /// </summary>
    public async Task<AdapterInfo> LoadAsync(string name, string path, CancellationToken cancellationToken = default)
    {
        ValidateName(name);
        var version = new AdapterVersion(name, System.IO.Path.GetFullPath(path));
        await Task.Run(() => LoadHost(version), cancellationToken).ConfigureAwait(false);
        if (version.Failure is not null)
        {
            throw new AdapterLoadException(version.Failure);
        }
        AdapterVersion? previous;
        lock (_lock)
        {
            _current.TryGetValue(name, out previous);
            _current[name] = version;
            _withdrawn.Remove(name);
            if (previous is not null) RetireLocked(previous);
            EnforceHostLimitsLocked();
        }
        _logger.LogInformation("Adapter {Name} loaded from {Path} (rank {Rank}, {Bytes} bytes){Replaced}", name, version.Path, version.Rank, version.Bytes,
            previous is null ? "" : $", replacing the version from {previous.Path}");
        StateChanged?.Invoke();
        return Info(version);
    }

    /// <summary>
    /// Removes a name. Requests in flight finish (Wait) or fail at the next step (Abort). The name is
    /// no longer loaded on demand from the adapter directories until <see cref="LoadAsync"/> loads it again.
    /// </summary>
    public bool Unload(string name, UnloadMode mode = UnloadMode.Wait)
    {
        lock (_lock)
        {
            if (!_current.Remove(name, out var version)) return false;
            _withdrawn.Add(name);
            _discovered = null;
            version.Aborted = mode == UnloadMode.Abort;
            RetireLocked(version);
        }
        _logger.LogInformation("Adapter {Name} unloaded ({Mode})", name, mode);
        StateChanged?.Invoke();
        return true;
    }

    /// <summary>True when <paramref name="name"/> is loaded or can be loaded on demand.</summary>
    public bool Exists(string name)
    {
        lock (_lock)
        {
            if (_current.ContainsKey(name)) return true;
            if (_withdrawn.Contains(name)) return false;
        }
        return FindInLoraDirectory(name) is not null;
    }

    /// <summary>Why <paramref name="name"/> cannot be served (unknown, or unloaded by request), for a 404 that says which.</summary>
    public UnknownAdapterException Unknown(string name)
    {
        lock (_lock)
        {
            return _withdrawn.Contains(name)
                ? new UnknownAdapterException(name, $"The model '{name}' was unloaded; load it again with POST /v1/load_lora_adapter to serve it.")
                : new UnknownAdapterException(name);
        }
    }

    /// <summary>
    /// The adapters under the adapter directories that can be loaded on demand and are not loaded:
    /// <c>DIR/name</c> as <c>name</c>, <c>DIR/name/version</c> (the artifact store) as <c>name@version</c>;
    /// the first directory wins a name. Reused for <see cref="AdapterManagerOptions.DiscoveryInterval"/>.
    /// </summary>
    public IReadOnlyList<DiscoveredAdapter> Discover()
    {
        (DateTimeOffset At, IReadOnlyList<DiscoveredAdapter> Adapters)? cached;
        lock (_lock) cached = _discovered;
        IReadOnlyList<DiscoveredAdapter> all;
        if (cached is { } fresh && DateTimeOffset.UtcNow - fresh.At < _options.DiscoveryInterval) all = fresh.Adapters;
        else
        {
            // The directories are read outside the lock: requests acquire adapters under it.
            all = ScanLoraDirectories();
            lock (_lock) _discovered = (DateTimeOffset.UtcNow, all);
        }
        lock (_lock) return all.Where(a => !_current.ContainsKey(a.Name) && !_withdrawn.Contains(a.Name)).ToArray();
    }

    private List<DiscoveredAdapter> ScanLoraDirectories()
    {
        var found = new Dictionary<string, DiscoveredAdapter>(StringComparer.Ordinal);
        static bool IsAdapter(string dir) => File.Exists(System.IO.Path.Combine(dir, "adapter_config.json"));
        // Staging and hidden directories (the artifact store's ".v3.tmp") are not adapters yet.
        static IEnumerable<string> Children(string dir) => Directory.EnumerateDirectories(dir).Where(d => !System.IO.Path.GetFileName(d).StartsWith('.'))
            .OrderBy(d => d, StringComparer.Ordinal);
        foreach (string root in LoraRoots.Where(Directory.Exists))
        {
            try
            {
                foreach (string dir in Children(root))
                {
                    string name = System.IO.Path.GetFileName(dir);
                    if (!IsSafeName(name)) continue;
                    if (IsAdapter(dir)) found.TryAdd(name, new DiscoveredAdapter(name, System.IO.Path.GetFullPath(dir)));
                    else
                        foreach (string versionDir in Children(dir).Where(IsAdapter))
                            found.TryAdd($"{name}@{System.IO.Path.GetFileName(versionDir)}", new DiscoveredAdapter($"{name}@{System.IO.Path.GetFileName(versionDir)}", System.IO.Path.GetFullPath(versionDir)));
                    if (found.Count >= _options.MaxDiscovered) return [.. found.Values];
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _logger.LogWarning("Cannot list the adapter directory {Directory}: {Message}", root, ex.Message);
            }
        }
        return [.. found.Values];
    }

    /// <summary>
    /// Holds the current version of <paramref name="name"/> for a request. A name found only under
    /// the adapter directory is registered and starts loading in the background.
    /// </summary>
    public AdapterLease Acquire(string name)
    {
        AdapterVersion? version;
        lock (_lock)
        {
            if (!_current.TryGetValue(name, out version))
            {
                string path = (_withdrawn.Contains(name) ? null : FindInLoraDirectory(name)) ?? throw Unknown(name);
                version = new AdapterVersion(name, path);
                _current[name] = version;
                _logger.LogInformation("Adapter {Name} requested: loading on demand from {Path}", name, path);
            }
            version.Leases++;
            return new AdapterLease(this, version);
        }
    }

    internal void Release(AdapterVersion version)
    {
        lock (_lock)
        {
            version.Leases--;
            if (version.Retired && version.Leases == 0 && version.Active == 0) FreeLocked(version);
        }
    }

    /// <summary>
    /// Called by the scheduler for a waiting request: Ready when the version is on the device
    /// (or was just put there), Loading while a background load runs (one is started if needed),
    /// Failed when it cannot be used (<paramref name="error"/> says why).
    /// </summary>
    public AdapterReadiness Prepare(AdapterVersion version, out string? error)
    {
        lock (_lock)
        {
            error = version.Failure;
            if (error is not null) return AdapterReadiness.Failed;
            if (version.OnDevice is not null)
            {
                version.LastUsed = ++_clock;
                _hits++;
                return AdapterReadiness.Ready;
            }
            if (version.Loading is { IsCompleted: false }) return AdapterReadiness.Loading;

            if (version.Host is null)
            {
                _misses++;
                version.Loading = Task.Run(() =>
                {
                    LoadHost(version);
                    lock (_lock) EnforceHostLimitsLocked();
                    StateChanged?.Invoke();
                });
                return AdapterReadiness.Loading;
            }

            // On host: make room on the device, then copy in the background.
            if (version.Bytes > _options.LoraDeviceMemory)
            {
                error = version.Failure = $"Adapter '{version.Name}' needs {version.Bytes} bytes on the device; --lora-device-memory is {_options.LoraDeviceMemory}.";
                return AdapterReadiness.Failed;
            }
            if (!MakeDeviceRoomLocked(version.Bytes)) return AdapterReadiness.Loading; // waits for running requests to finish
            if (DeviceIsHost)
            {
                version.OnDevice = version.Host;
                version.LastUsed = ++_clock;
                _deviceLoads++;
                return AdapterReadiness.Ready;
            }
            _misses++;
            var host = version.Host;
            version.Loading = Task.Run(() =>
            {
                try
                {
                    var copy = host.CopyTo(_model.Device);
                    lock (_lock)
                    {
                        if (version.Retired && version.Leases == 0) { copy.Dispose(); return; }
                        version.OnDevice = copy;
                        version.LastUsed = ++_clock;
                        _deviceLoads++;
                    }
                }
                catch (Exception ex)
                {
                    lock (_lock) version.Failure = $"Adapter '{version.Name}' could not be copied to {_model.Device}: {ex.Message}";
                }
                StateChanged?.Invoke();
            });
            return AdapterReadiness.Loading;
        }
    }

    /// <summary>Marks a version as used by a running sequence (it cannot leave the device meanwhile).</summary>
    public void Activate(AdapterVersion version)
    {
        lock (_lock)
        {
            version.Active++;
            version.LastUsed = ++_clock;
        }
    }

    public void Deactivate(AdapterVersion version)
    {
        lock (_lock)
        {
            version.Active--;
            if (version.Retired && version.Leases == 0 && version.Active == 0) FreeLocked(version);
        }
    }

    /// <summary>Device-resident versions a batch may mix at once.</summary>
    public int MaxActiveAdapters => _options.MaxLoras;

    /// <summary>
    /// The concatenated weights of <paramref name="versions"/> (all on the device), cached per
    /// combination so that a steady batch rebuilds nothing.
    /// </summary>
    public LoraWorkingSet WorkingSet(IReadOnlyList<AdapterVersion> versions)
    {
        string key = string.Join(",", versions.Select(v => v.Id));
        lock (_lock)
        {
            if (_workingSets.TryGetValue(key, out var set))
            {
                _workingSetOrder.Remove(key);
                _workingSetOrder.AddFirst(key);
                return set;
            }
            var adapters = versions.Select(v => v.OnDevice ?? throw new InvalidOperationException($"Adapter '{v.Name}' is not on the device.")).ToArray();
            set = new LoraWorkingSet(adapters, _model.LinearGroups.Count, _model.Device);
            _workingSets[key] = set;
            _workingSetOrder.AddFirst(key);
            while (_workingSetOrder.Count > 4)
            {
                string old = _workingSetOrder.Last!.Value;
                _workingSetOrder.RemoveLast();
                _workingSets.Remove(old, out var stale);
                stale?.Dispose();
            }
            return set;
        }
    }

    public IReadOnlyList<AdapterInfo> List()
    {
        lock (_lock) return _current.Values.OrderBy(v => v.Name, StringComparer.Ordinal).Select(Info).ToArray();
    }

    public AdapterInfo? Find(string name)
    {
        lock (_lock) return _current.TryGetValue(name, out var v) ? Info(v) : null;
    }

    public AdapterStats Stats
    {
        get
        {
            lock (_lock)
            {
                var all = _current.Values.Concat(_retired).ToArray();
                var device = all.Where(v => v.OnDevice is not null).ToArray();
                var host = all.Where(v => v.Host is not null).ToArray();
                return new AdapterStats(device.Length, device.Sum(v => v.Bytes), host.Length, host.Sum(v => v.Bytes),
                    _loads, _deviceLoads, _evictions, _hits, _misses);
            }
        }
    }

    private AdapterInfo Info(AdapterVersion v) => new(v.Name, v.Path,
        v.OnDevice is not null ? AdapterResidency.Device : v.Host is not null ? AdapterResidency.Host : AdapterResidency.Disk,
        v.Rank, v.Bytes, v.Active, v.LoadedAt, v.Checksum);

    private void LoadHost(AdapterVersion version)
    {
        try
        {
            var adapter = LoraAdapter.Load(version.Path, _model, _options.MaxLoraRank, CPU);
            lock (_lock)
            {
                version.Host = adapter;
                version.Bytes = adapter.Bytes;
                version.Rank = adapter.MaxRank;
                version.Checksum = adapter.Checksum;
                version.LastUsed = ++_clock;
                _loads++;
            }
            if (adapter.PaddingColumns > 0)
                _logger.LogInformation("Adapter {Name}: {Padding} LoRA columns are zero padding (layer-selective ranks)", version.Name, adapter.PaddingColumns);
        }
        catch (AdapterLoadException ex)
        {
            lock (_lock) version.Failure = ex.Message;
            _logger.LogWarning("Adapter {Name} failed to load: {Message}", version.Name, ex.Message);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ModelLoadException or ExternalException)
        {
            lock (_lock) version.Failure = $"Adapter '{version.Name}' could not be read from '{version.Path}': {ex.Message}";
            _logger.LogWarning(ex, "Adapter {Name} failed to load", version.Name);
        }
    }

    private bool MakeDeviceRoomLocked(long bytes)
    {
        while (true)
        {
            var resident = _current.Values.Concat(_retired).Where(v => v.OnDevice is not null).ToList();
            if (resident.Count < _options.MaxLoras && resident.Sum(v => v.Bytes) + bytes <= _options.LoraDeviceMemory) return true;
            var victim = resident.Where(v => v.Active == 0).MinBy(v => v.LastUsed);
            if (victim is null) return false;
            DropDeviceLocked(victim);
            _evictions++;
            _logger.LogDebug("Adapter {Name} evicted from the device", victim.Name);
        }
    }

    private void EnforceHostLimitsLocked()
    {
        while (true)
        {
            var resident = _current.Values.Where(v => v.Host is not null).ToList();
            if (resident.Count <= _options.MaxCpuLoras && resident.Sum(v => v.Bytes) <= _options.LoraHostMemory) return;
            var victim = resident.Where(v => v.Active == 0 && v.Loading is not { IsCompleted: false }).MinBy(v => v.LastUsed);
            if (victim is null) return;
            DropDeviceLocked(victim);
            if (victim.Host is not null && !ReferenceEquals(victim.Host, victim.OnDevice)) victim.Host.Dispose();
            victim.Host = null;
            _evictions++;
            _logger.LogDebug("Adapter {Name} evicted from host memory", victim.Name);
        }
    }

    private void DropDeviceLocked(AdapterVersion version)
    {
        if (version.OnDevice is null) return;
        InvalidateWorkingSetsLocked(version);
        if (!ReferenceEquals(version.OnDevice, version.Host)) version.OnDevice.Dispose();
        version.OnDevice = null;
    }

    private void InvalidateWorkingSetsLocked(AdapterVersion version)
    {
        string id = version.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var key in _workingSets.Keys.Where(k => k.Split(',').Contains(id)).ToArray())
        {
            _workingSets.Remove(key, out var set);
            _workingSetOrder.Remove(key);
            set?.Dispose();
        }
    }

    private void RetireLocked(AdapterVersion version)
    {
        version.Retired = true;
        if (version.Leases == 0 && version.Active == 0) FreeLocked(version);
        else _retired.Add(version);
    }

    private void FreeLocked(AdapterVersion version)
    {
        _retired.Remove(version);
        DropDeviceLocked(version);
        version.Host?.Dispose();
        version.Host = null;
    }

    /// <summary>
    /// <c>name</c> is looked up as <c>DIR/name</c>, and a versioned <c>name@version</c> as
    /// <c>DIR/name/version</c> (the artifact store's layout) or <c>DIR/name@version</c>.
    /// </summary>
    private string? FindInLoraDirectory(string name)
    {
        if (!IsSafeName(name)) return null;
        int at = name.IndexOf('@', StringComparison.Ordinal);
        foreach (string root in LoraRoots)
        {
            string[] candidates = at > 0
                ? [System.IO.Path.Combine(root, name[..at], name[(at + 1)..]), System.IO.Path.Combine(root, name)]
                : [System.IO.Path.Combine(root, name)];
            string? found = candidates.FirstOrDefault(p => File.Exists(System.IO.Path.Combine(p, "adapter_config.json")));
            if (found is not null) return System.IO.Path.GetFullPath(found);
        }
        return null;
    }

    /// <summary>The adapter directories in the order a name is looked up: <c>--lora-dir</c>, then the additional ones.</summary>
    private IEnumerable<string> LoraRoots =>
        _options.LoraDirectory is { } first ? [first, .. _options.AdditionalLoraDirectories] : _options.AdditionalLoraDirectories;

    private static bool IsSafeName(string name) =>
        name.Length is > 0 and <= 200 && !name.Contains("..", StringComparison.Ordinal) && name.IndexOfAny(['/', '\\', '\0']) < 0;

    private static void ValidateName(string name)
    {
        if (!IsSafeName(name)) throw new ArgumentException($"'{name}' is not a valid adapter name (1-200 characters, no '/', '\\' or '..').", nameof(name));
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var set in _workingSets.Values) set.Dispose();
            _workingSets.Clear();
            foreach (var v in _current.Values.Concat(_retired).ToArray()) FreeLocked(v);
            _current.Clear();
        }
    }
}
