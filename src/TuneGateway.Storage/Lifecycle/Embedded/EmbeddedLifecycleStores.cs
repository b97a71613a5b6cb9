namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded backend: every store over one <see cref="LifecycleFile"/> under <c>{data}/lifecycle</c>.</summary>
internal static class EmbeddedLifecycleStores
{
    public static LifecycleStoreSet Open(string dataDirectory, TimeProvider? time = null)
    {
        var file = new LifecycleFile(dataDirectory, time);
        return new LifecycleStoreSet(new FileAdapterRegistry(file), new FileAliasStore(file), new FilePipelineStore(file), new FileApprovalStore(file),
            new FileCanaryStore(file), new FileJobHistory(file), new FileLeaseManager(file), file);
    }
}
