namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded alias routes; watchers in this process hear of every change at once.</summary>
internal sealed class FileAliasStore(LifecycleFile file) : IAliasStore, IDisposable
{
    private readonly InProcessAliases _aliasWatchers = new();

    Task<AliasRoute?> IAliasReader.GetAsync(string alias, CancellationToken cancellationToken)
    {
        lock (file.Lock) return Task.FromResult(file.State.Aliases.GetValueOrDefault(alias));
    }

    Task<IReadOnlyList<AliasRoute>> IAliasReader.ListAsync(CancellationToken cancellationToken) => Task.FromResult(ListAliases());

    public Task<AliasRoute> SetAsync(string alias, IReadOnlyList<AliasArm> arms, string actor, long? expectedRevision = null, string? baseModel = null,
        CancellationToken cancellationToken = default)
    {
        AliasRoute route;
        lock (file.Lock)
        {
            route = InProcessAliases.Set(file.State.Aliases, alias, arms, actor, expectedRevision, baseModel, file.Now);
            file.Save();
        }
        _aliasWatchers.Notify(route);
        return Task.FromResult(route);
    }

    Task<bool> IAliasStore.DeleteAsync(string alias, string actor, CancellationToken cancellationToken)
    {
        AliasRoute? removed;
        lock (file.Lock)
        {
            removed = InProcessAliases.Delete(file.State.Aliases, alias, actor, file.Now);
            if (removed is not null) file.Save();
        }
        if (removed is not null) _aliasWatchers.Notify(removed);
        return Task.FromResult(removed is not null);
    }

    /// <summary>Current routes, then every change (a deleted alias arrives with no arms).</summary>
    public IAsyncEnumerable<AliasRoute> WatchAsync(CancellationToken cancellationToken) => _aliasWatchers.WatchAsync(ListAliases, cancellationToken);

    private IReadOnlyList<AliasRoute> ListAliases()
    {
        lock (file.Lock) return InProcessAliases.Ordered(file.State.Aliases.Values);
    }

    public void Dispose() => _aliasWatchers.Complete();
}
