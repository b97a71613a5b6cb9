using System.Text.Json;

namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded canaries, and their revisions (kept when a canary ends).</summary>
internal sealed class FileCanaryStore(LifecycleFile file) : ICanaryStore
{
    Task<CanaryState?> ICanaryReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        lock (file.Lock) return Task.FromResult(CurrentCanary(adapter));
    }

    public Task<CanaryState> PutAsync(string adapter, CanaryState state, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        lock (file.Lock)
        {
            CheckCanaryRevision(adapter, expectedRevision);
            long revision = file.State.CanaryRevisions.GetValueOrDefault(adapter) + 1;
            file.State.CanaryRevisions[adapter] = revision;
            var stored = state with { Revision = revision };
            file.State.Canaries[adapter] = stored;
            RemoveLegacyCanary(adapter);
            file.Save();
            return Task.FromResult(stored);
        }
    }

    public Task<bool> ClearAsync(string adapter, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            CheckCanaryRevision(adapter, expectedRevision);
            bool removed = file.State.Canaries.Remove(adapter) | RemoveLegacyCanary(adapter);
            if (removed) file.Save();
            return Task.FromResult(removed);
        }
    }

    private CanaryState? CurrentCanary(string adapter)
    {
        if (file.State.Canaries.TryGetValue(adapter, out var canary)) return canary with { Revision = file.State.CanaryRevisions.GetValueOrDefault(adapter) };
        return file.State.PipelineState.GetValueOrDefault(adapter)?.GetValueOrDefault(CanaryState.LegacyPipelineStateKey) is { ValueKind: JsonValueKind.Object } legacy
            ? legacy.Deserialize<CanaryState>(LifecycleJson.Options)
            : null;
    }

    private void CheckCanaryRevision(string adapter, long? expectedRevision)
    {
        long current = CurrentCanary(adapter)?.Revision ?? 0;
        if (expectedRevision is long expected && current != expected)
            throw new StateConflictException($"The canary of '{adapter}' is at revision {current}, not {expected}.");
    }

    private bool RemoveLegacyCanary(string adapter) =>
        file.State.PipelineState.TryGetValue(adapter, out var values) && values.Remove(CanaryState.LegacyPipelineStateKey);
}
