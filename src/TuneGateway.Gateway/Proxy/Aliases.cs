using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Gateway.Proxy;

/// <summary>The version an alias resolved to for one request.</summary>
public sealed record AliasAssignment(string Alias, string Model, string? BaseModel);

/// <summary>
/// Resolves alias names to versions on the request path without touching the store: keeps a
/// snapshot of the lifecycle's alias routes that the store's watch updates as they change (on any
/// replica), that a periodic refresh re-reads (a lost notification still takes effect within
/// <see cref="GatewayOptions.AliasRefresh"/>), and that this process's own edits update at once.
/// </summary>
public sealed class AliasResolver(IAliasReader store, GatewayOptions options, ILogger<AliasResolver> logger) : BackgroundService
{
    private readonly Lock _lock = new();
    private long _changes;
    private volatile IReadOnlyDictionary<string, AliasRoute> _aliases = new Dictionary<string, AliasRoute>(StringComparer.Ordinal);

    public bool IsAlias(string name) => _aliases.ContainsKey(name);

    public IReadOnlyList<AliasRoute> All => [.. _aliases.Values.OrderBy(a => a.Alias, StringComparer.Ordinal)];

    /// <summary>
    /// The version of <paramref name="name"/> for this request, or null when it is no alias. With a
    /// <paramref name="user"/>, the choice is a stable hash of alias and user (sticky; a user moves
    /// only when weights move past them); without, it is random.
    /// </summary>
    public AliasAssignment? Resolve(string name, string? user)
    {
        if (!_aliases.TryGetValue(name, out var alias)) return null;
        double total = alias.Arms.Sum(v => v.Weight);
        double point = (user is null ? Random.Shared.NextDouble() : StablePoint(name, user)) * total;
        foreach (var arm in alias.Arms)
        {
            if (arm.Weight <= 0) continue;
            if (point < arm.Weight) return new AliasAssignment(name, arm.Model, alias.BaseModel);
            point -= arm.Weight;
        }
        return new AliasAssignment(name, alias.Arms.Last(v => v.Weight > 0).Model, alias.BaseModel);
    }

    /// <summary>A point in [0, 1) fixed for a given alias and user.</summary>
    internal static double StablePoint(string alias, string user)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(alias + "\n" + user), hash);
        ulong bits = BitConverter.ToUInt64(hash);
        return (bits >> 11) * (1.0 / (1UL << 53));
    }

    /// <summary>
    /// A route as it changed (no arms: deleted). The API applies its own writes here, so that the
    /// next request sees them; the same change arriving again by the watch, or an older one late, changes nothing.
    /// </summary>
    public void Apply(AliasRoute route)
    {
        lock (_lock)
        {
            if (_aliases.TryGetValue(route.Alias, out var known) && known.Revision >= route.Revision) return;
            var next = new Dictionary<string, AliasRoute>(_aliases, StringComparer.Ordinal);
            if (route.Arms.Count == 0) next.Remove(route.Alias);
            else next[route.Alias] = route;
            _aliases = next;
            _changes++;
        }
    }

    /// <summary>Forgets an alias this process deleted.</summary>
    public void Remove(string alias)
    {
        lock (_lock)
        {
            if (!_aliases.ContainsKey(alias)) return;
            _aliases = new Dictionary<string, AliasRoute>(_aliases.Where(a => a.Key != alias), StringComparer.Ordinal);
            _changes++;
        }
    }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await RefreshAsync(cancellationToken).ConfigureAwait(false);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task RefreshAsync(CancellationToken cancellationToken)
    {
        long seen;
        lock (_lock) seen = _changes;
        var all = await store.ListAsync(cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            // A change that arrived while listing is newer than the list: keep it (the next refresh reconciles).
            if (_changes == seen) _aliases = all.Where(a => a.Arms.Count > 0).ToDictionary(a => a.Alias, StringComparer.Ordinal);
        }
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.WhenAll(WatchAsync(stoppingToken), RefreshPeriodicallyAsync(stoppingToken));

    /// <summary>Applies the store's changes (from every replica) as they come; watches again after a failure.</summary>
    private async Task WatchAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await foreach (var route in store.WatchAsync(stoppingToken).ConfigureAwait(false)) Apply(route);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                logger.LogWarning("Watching aliases failed ({Message}); retrying. Routing keeps the last aliases and refreshes them periodically.", ex.Message);
            }
            try { await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
        }
    }

    private async Task RefreshPeriodicallyAsync(CancellationToken stoppingToken)
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
