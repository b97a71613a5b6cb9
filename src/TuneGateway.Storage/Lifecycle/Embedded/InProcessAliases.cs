using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>
/// The in-process side of an alias store (embedded, in memory): the routes kept in a dictionary
/// under the store's lock, the revision rules, and the watchers told of every change. Redis has
/// its own (scripts, pub/sub).
/// </summary>
internal sealed class InProcessAliases
{
    private readonly Lock _lock = new();
    private readonly List<Channel<AliasRoute>> _channels = [];

    /// <summary>The routes <paramref name="current"/> lists, then every change notified from then on, until cancelled.</summary>
    public async IAsyncEnumerable<AliasRoute> WatchAsync(Func<IReadOnlyList<AliasRoute>> current, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var channel = Channel.CreateUnbounded<AliasRoute>();
        // Subscribed before the listing: a change in between arrives twice (harmless), never not at all.
        lock (_lock) _channels.Add(channel);
        try
        {
            foreach (var route in current()) yield return route;
            await foreach (var route in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false)) yield return route;
        }
        finally
        {
            lock (_lock) _channels.Remove(channel);
        }
    }

    public void Notify(AliasRoute route)
    {
        Channel<AliasRoute>[] channels;
        lock (_lock) channels = [.. _channels];
        foreach (var channel in channels) channel.Writer.TryWrite(route);
    }

    /// <summary>Ends every watch (the store is closing).</summary>
    public void Complete()
    {
        lock (_lock)
        {
            foreach (var channel in _channels) channel.Writer.TryComplete();
            _channels.Clear();
        }
    }

    /// <summary>Replaces an alias's route in <paramref name="routes"/> with the next revision (compare-and-set on <paramref name="expectedRevision"/>).</summary>
    public static AliasRoute Set(Dictionary<string, AliasRoute> routes, string alias, IReadOnlyList<AliasArm> arms, string actor, long? expectedRevision, string? baseModel,
        DateTimeOffset now)
    {
        LifecycleRules.ValidateArms(alias, arms);
        var current = routes.GetValueOrDefault(alias);
        if (expectedRevision is long expected && (current?.Revision ?? 0) != expected)
            throw new StateConflictException($"Alias '{alias}' is at revision {current?.Revision ?? 0}, not {expected}.");
        var route = new AliasRoute { Alias = alias, Arms = [.. arms], BaseModel = baseModel, Revision = (current?.Revision ?? 0) + 1, UpdatedAt = now, UpdatedBy = actor };
        routes[alias] = route;
        return route;
    }

    /// <summary>Removes an alias; what watchers are told (no arms, the next revision), or null when there was none.</summary>
    public static AliasRoute? Delete(Dictionary<string, AliasRoute> routes, string alias, string actor, DateTimeOffset now) =>
        routes.Remove(alias, out var removed) ? removed with { Arms = [], Revision = removed.Revision + 1, UpdatedBy = actor, UpdatedAt = now } : null;

    public static IReadOnlyList<AliasRoute> Ordered(IEnumerable<AliasRoute> routes) => [.. routes.OrderBy(a => a.Alias, StringComparer.Ordinal)];
}
