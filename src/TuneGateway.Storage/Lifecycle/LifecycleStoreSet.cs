namespace TuneGateway.Storage.Lifecycle;

/// <summary>
/// One backend's lifecycle stores, one class per store over the context they share (the embedded
/// file and its lock, or the Redis connection and key prefix). Disposing the set closes the context.
/// </summary>
internal sealed record LifecycleStoreSet(IAdapterRegistry Registry, IAliasStore Aliases, IPipelineStore Pipelines, IApprovalStore Approvals,
    ICanaryStore Canaries, IJobHistory Jobs, ILeaseManager Leases, IDisposable? Context = null) : IDisposable
{
    public void Dispose()
    {
        (Aliases as IDisposable)?.Dispose();
        Context?.Dispose();
    }
}
