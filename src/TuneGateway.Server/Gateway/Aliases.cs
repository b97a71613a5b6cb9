using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace TuneGateway.Server.Gateway;

/// <summary>One concrete version behind an alias and its share of the traffic.</summary>
public sealed record AliasVersion(string Model, double Weight);

/// <summary>
/// An adapter alias: the name clients call (say <c>support-bot</c>) and the versions it is split
/// over (<c>support-bot@v3</c> 90, <c>support-bot@v4</c> 10). Weights are relative.
/// </summary>
public sealed record AliasConfig
{
    public required string Name { get; init; }
    public required IReadOnlyList<AliasVersion> Versions { get; init; }
    /// <summary>The base model the versions are adapters of, when known (routing uses it).</summary>
    public string? BaseModel { get; init; }
    public DateTimeOffset UpdatedAt { get; init; } = DateTimeOffset.UtcNow;

    /// <summary>Throws <see cref="ArgumentException"/> when the alias cannot route.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Name) || Name.Contains('@', StringComparison.Ordinal) || Name.Contains('/', StringComparison.Ordinal))
            throw new ArgumentException($"'{Name}' is not a valid alias name (no '@' or '/').", "name");
        if (Versions.Count == 0) throw new ArgumentException("An alias needs at least one version.", "versions");
        foreach (var v in Versions)
        {
            if (string.IsNullOrWhiteSpace(v.Model)) throw new ArgumentException("Every version needs a model.", "versions");
            if (v.Model == Name) throw new ArgumentException($"The alias '{Name}' cannot point to itself.", "versions");
            if (!double.IsFinite(v.Weight) || v.Weight < 0) throw new ArgumentException($"The weight of '{v.Model}' must be a finite number >= 0.", "versions");
        }
        if (Versions.Sum(v => v.Weight) <= 0) throw new ArgumentException("At least one weight must be positive.", "versions");
        if (Versions.Select(v => v.Model).Distinct(StringComparer.Ordinal).Count() != Versions.Count)
            throw new ArgumentException("A version appears twice.", "versions");
    }
}

/// <summary>A change to an alias: its new configuration, or null when it was deleted.</summary>
public sealed record AliasChange(string Name, AliasConfig? Config);

/// <summary>
/// Where aliases and their A/B weights live. The in-memory store serves a single gateway; a shared
/// store (Redis, the embedded store) lets the retraining loop and several gateways share them.
/// Implementations raise <see cref="Changed"/> after every write they know of.
/// </summary>
public interface IAliasStore
{
    Task<AliasConfig?> GetAsync(string name, CancellationToken cancellationToken = default);
    Task<IReadOnlyList<AliasConfig>> ListAsync(CancellationToken cancellationToken = default);
    /// <param name="actor">Who made the change (audited by shared stores).</param>
    Task SetAsync(AliasConfig config, string actor = "api", CancellationToken cancellationToken = default);
    Task<bool> DeleteAsync(string name, string actor = "api", CancellationToken cancellationToken = default);
    event Action<AliasChange>? Changed;
}

/// <summary>Aliases in this process's memory.</summary>
public sealed class InMemoryAliasStore : IAliasStore
{
    private readonly ConcurrentDictionary<string, AliasConfig> _aliases = new(StringComparer.Ordinal);

    public event Action<AliasChange>? Changed;

    public Task<AliasConfig?> GetAsync(string name, CancellationToken cancellationToken = default) =>
        Task.FromResult(_aliases.GetValueOrDefault(name));

    public Task<IReadOnlyList<AliasConfig>> ListAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<AliasConfig>>(_aliases.Values.OrderBy(a => a.Name, StringComparer.Ordinal).ToArray());

    public Task SetAsync(AliasConfig config, string actor = "api", CancellationToken cancellationToken = default)
    {
        config.Validate();
        _aliases[config.Name] = config;
        Changed?.Invoke(new AliasChange(config.Name, config));
        return Task.CompletedTask;
    }

    public Task<bool> DeleteAsync(string name, string actor = "api", CancellationToken cancellationToken = default)
    {
        bool removed = _aliases.TryRemove(name, out _);
        if (removed) Changed?.Invoke(new AliasChange(name, null));
        return Task.FromResult(removed);
    }
}

/// <summary>The version an alias resolved to for one request.</summary>
public sealed record AliasAssignment(string Alias, string Model, string? BaseModel);

/// <summary>
/// Resolves alias names to versions on the request path without touching the store: keeps a
/// snapshot that the store's change events update at once and a periodic refresh re-reads (so a
/// store whose events cannot reach this process still takes effect within a second).
/// </summary>
public sealed class AliasResolver(IAliasStore store, GatewayOptions options, ILogger<AliasResolver> logger) : BackgroundService
{
    private readonly Lock _lock = new();
    private long _changes;
    private volatile IReadOnlyDictionary<string, AliasConfig> _aliases = new Dictionary<string, AliasConfig>(StringComparer.Ordinal);

    public bool IsAlias(string name) => _aliases.ContainsKey(name);

    public IReadOnlyList<AliasConfig> All => _aliases.Values.OrderBy(a => a.Name, StringComparer.Ordinal).ToArray();

    /// <summary>
    /// The version of <paramref name="name"/> for this request, or null when it is no alias. With a
    /// <paramref name="user"/>, the choice is a stable hash of alias and user (sticky; a user moves
    /// only when weights move past them); without, it is random.
    /// </summary>
    public AliasAssignment? Resolve(string name, string? user)
    {
        if (!_aliases.TryGetValue(name, out var alias)) return null;
        double total = alias.Versions.Sum(v => v.Weight);
        double point = (user is null ? Random.Shared.NextDouble() : StablePoint(name, user)) * total;
        foreach (var version in alias.Versions)
        {
            if (version.Weight <= 0) continue;
            if (point < version.Weight) return new AliasAssignment(name, version.Model, alias.BaseModel);
            point -= version.Weight;
        }
        return new AliasAssignment(name, alias.Versions.Last(v => v.Weight > 0).Model, alias.BaseModel);
    }

    /// <summary>A point in [0, 1) fixed for a given alias and user.</summary>
    internal static double StablePoint(string alias, string user)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(alias + "\n" + user), hash);
        ulong bits = BitConverter.ToUInt64(hash);
        return (bits >> 11) * (1.0 / (1UL << 53));
    }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        store.Changed += OnChanged;
        await RefreshAsync(cancellationToken).ConfigureAwait(false);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        store.Changed -= OnChanged;
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    private void OnChanged(AliasChange change)
    {
        lock (_lock)
        {
            var next = new Dictionary<string, AliasConfig>(_aliases, StringComparer.Ordinal);
            if (change.Config is null) next.Remove(change.Name);
            else next[change.Name] = change.Config;
            _aliases = next;
            _changes++;
        }
    }

    private async Task RefreshAsync(CancellationToken cancellationToken)
    {
        long seen;
        lock (_lock) seen = _changes;
        var all = await store.ListAsync(cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            // A change event that arrived while listing is newer than the list: keep it (the next refresh reconciles).
            if (_changes == seen) _aliases = all.ToDictionary(a => a.Name, StringComparer.Ordinal);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.AliasRefresh);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await RefreshAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    logger.LogWarning("Could not refresh aliases: {Message}", ex.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
