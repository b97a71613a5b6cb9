using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TuneGateway.Server.Gateway;
using TuneGateway.Storage.Lifecycle;
using LifecycleAliases = TuneGateway.Storage.Lifecycle.IAliasStore;

namespace TuneGateway.Server.Lifecycle;

/// <summary>
/// The gateway's aliases kept in the lifecycle store, so that promotions, canaries and rollbacks
/// made by the controller or by an operator on any replica route every gateway's requests. Weights
/// given through <c>PUT /admin/aliases</c> are normalised to sum to 1; each write is audited. Changes
/// reach the resolver through the store's watch (Redis pub/sub, or in-process for the embedded store),
/// and the resolver's periodic refresh covers a lost notification.
/// </summary>
public sealed class SharedAliasStore(LifecycleAliases aliases, IAdapterRegistry registry, ILogger<SharedAliasStore> logger) : BackgroundService, Gateway.IAliasStore
{
    public event Action<AliasChange>? Changed;

    public async Task<AliasConfig?> GetAsync(string name, CancellationToken cancellationToken = default) =>
        await aliases.GetAsync(name, cancellationToken).ConfigureAwait(false) is { } route ? ToConfig(route) : null;

    public async Task<IReadOnlyList<AliasConfig>> ListAsync(CancellationToken cancellationToken = default) =>
        [.. (await aliases.ListAsync(cancellationToken).ConfigureAwait(false)).Where(r => r.Arms.Count > 0).Select(ToConfig)];

    public async Task SetAsync(AliasConfig config, string actor = "api", CancellationToken cancellationToken = default)
    {
        config.Validate();
        double total = config.Versions.Sum(v => v.Weight);
        AliasArm[] arms = [.. config.Versions.Select(v => new AliasArm(v.Model, v.Weight / total, v.Model))];
        var route = await aliases.SetAsync(config.Name, arms, actor, cancellationToken: cancellationToken).ConfigureAwait(false);
        await registry.AppendAuditAsync(new AuditEvent
        {
            Actor = actor, Action = "alias.set", Adapter = config.Name,
            To = string.Join(", ", arms.Select(a => $"{a.Model} {a.Weight:P0}")), Reason = $"revision {route.Revision}",
        }, cancellationToken).ConfigureAwait(false);
        Changed?.Invoke(new AliasChange(config.Name, ToConfig(route)));
    }

    public async Task<bool> DeleteAsync(string name, string actor = "api", CancellationToken cancellationToken = default)
    {
        if (!await aliases.DeleteAsync(name, actor, cancellationToken).ConfigureAwait(false)) return false;
        await registry.AppendAuditAsync(new AuditEvent { Actor = actor, Action = "alias.delete", Adapter = name }, cancellationToken).ConfigureAwait(false);
        Changed?.Invoke(new AliasChange(name, null));
        return true;
    }

    private static AliasConfig ToConfig(AliasRoute route) => new()
    {
        Name = route.Alias,
        Versions = [.. route.Arms.Select(a => new AliasVersion(a.Model, a.Weight))],
        UpdatedAt = route.UpdatedAt,
    };

    /// <summary>Forwards the store's changes (from every replica) to the resolver; reconnects after failures.</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await foreach (var route in aliases.WatchAsync(stoppingToken).ConfigureAwait(false))
                    Changed?.Invoke(new AliasChange(route.Alias, route.Arms.Count == 0 ? null : ToConfig(route)));
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
}
