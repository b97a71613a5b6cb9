namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>
/// Aliases in this process's memory, for a gateway without lifecycle stores (no <c>--redis</c>
/// or <c>--data-dir</c>, and tests): the lifecycle's alias model and rules, nothing kept across a
/// restart, nothing audited (there is no audit trail). Its own editor, since there is no
/// <see cref="LifecycleManager"/> to go through.
/// </summary>
public sealed class InMemoryAliasStore(TimeProvider? time = null) : IAliasStore, IAliasEditor
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, AliasRoute> _routes = new(StringComparer.Ordinal);
    private readonly InProcessAliases _watchers = new();

    public Task<AliasRoute?> GetAsync(string alias, CancellationToken cancellationToken = default)
    {
        lock (_lock) return Task.FromResult(_routes.GetValueOrDefault(alias));
    }

    public Task<IReadOnlyList<AliasRoute>> ListAsync(CancellationToken cancellationToken = default) => Task.FromResult(List());

    public IAsyncEnumerable<AliasRoute> WatchAsync(CancellationToken cancellationToken) => _watchers.WatchAsync(List, cancellationToken);

    Task<AliasRoute> IAliasStore.SetAsync(string alias, IReadOnlyList<AliasArm> arms, string actor, long? expectedRevision, string? baseModel,
        CancellationToken cancellationToken)
    {
        AliasRoute route;
        lock (_lock) route = InProcessAliases.Set(_routes, alias, arms, actor, expectedRevision, baseModel, _time.GetUtcNow());
        _watchers.Notify(route);
        return Task.FromResult(route);
    }

    Task<bool> IAliasStore.DeleteAsync(string alias, string actor, CancellationToken cancellationToken)
    {
        AliasRoute? removed;
        lock (_lock) removed = InProcessAliases.Delete(_routes, alias, actor, _time.GetUtcNow());
        if (removed is not null) _watchers.Notify(removed);
        return Task.FromResult(removed is not null);
    }

    public Task<AliasRoute> SetAliasAsync(string alias, IReadOnlyList<AliasArm> arms, string? baseModel, string actor, CancellationToken cancellationToken = default) =>
        ((IAliasStore)this).SetAsync(alias, LifecycleRules.Normalised(arms), actor, baseModel: baseModel, cancellationToken: cancellationToken);

    public Task<bool> DeleteAliasAsync(string alias, string actor, CancellationToken cancellationToken = default) => ((IAliasStore)this).DeleteAsync(alias, actor, cancellationToken);

    private IReadOnlyList<AliasRoute> List()
    {
        lock (_lock) return InProcessAliases.Ordered(_routes.Values);
    }
}
