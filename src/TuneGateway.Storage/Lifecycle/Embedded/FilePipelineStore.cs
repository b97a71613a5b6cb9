using System.Text.Json;

namespace TuneGateway.Storage.Lifecycle.Embedded;

/// <summary>The embedded pipeline definitions, paused flags and the controller's per-pipeline state.</summary>
internal sealed class FilePipelineStore(LifecycleFile file) : IPipelineStore
{
    Task<PipelineRecord?> IPipelineReader.GetAsync(string adapter, CancellationToken cancellationToken)
    {
        lock (file.Lock) return Task.FromResult(file.State.Pipelines.GetValueOrDefault(adapter));
    }

    Task<IReadOnlyList<PipelineRecord>> IPipelineReader.ListAsync(CancellationToken cancellationToken)
    {
        lock (file.Lock) return Task.FromResult<IReadOnlyList<PipelineRecord>>(file.State.Pipelines.Values.OrderBy(p => p.Adapter, StringComparer.Ordinal).ToArray());
    }

    public Task<PipelineRecord> UpsertAsync(string adapter, JsonElement definition, string actor, long? expectedRevision = null, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        lock (file.Lock)
        {
            var current = file.State.Pipelines.GetValueOrDefault(adapter);
            if (expectedRevision is long expected && (current?.Revision ?? 0) != expected)
                throw new StateConflictException($"Pipeline '{adapter}' is at revision {current?.Revision ?? 0}, not {expected}.");
            var record = new PipelineRecord
            {
                Adapter = adapter, Definition = definition.Clone(), Paused = current?.Paused ?? false,
                Revision = (current?.Revision ?? 0) + 1, UpdatedAt = file.Now, UpdatedBy = actor,
            };
            file.State.Pipelines[adapter] = record;
            file.Save();
            return Task.FromResult(record);
        }
    }

    public Task<PipelineRecord> SetPausedAsync(string adapter, bool paused, string actor, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            var current = file.State.Pipelines.GetValueOrDefault(adapter) ?? throw new KeyNotFoundException($"No pipeline for '{adapter}'.");
            var record = current with { Paused = paused, Revision = current.Revision + 1, UpdatedAt = file.Now, UpdatedBy = actor };
            file.State.Pipelines[adapter] = record;
            file.Save();
            return Task.FromResult(record);
        }
    }

    Task<bool> IPipelineStore.DeleteAsync(string adapter, string actor, CancellationToken cancellationToken)
    {
        lock (file.Lock)
        {
            bool removed = file.State.Pipelines.Remove(adapter);
            file.State.PipelineState.Remove(adapter);
            if (removed) file.Save();
            return Task.FromResult(removed);
        }
    }

    public Task<JsonElement?> GetStateAsync(string adapter, string key, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            JsonElement? value = file.State.PipelineState.TryGetValue(adapter, out var values) && values.TryGetValue(key, out var v) ? v.Clone() : null;
            return Task.FromResult(value);
        }
    }

    public Task SetStateAsync(string adapter, string key, JsonElement value, CancellationToken cancellationToken = default)
    {
        lock (file.Lock)
        {
            if (!file.State.PipelineState.TryGetValue(adapter, out var values)) file.State.PipelineState[adapter] = values = new(StringComparer.Ordinal);
            if (value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) values.Remove(key);
            else values[key] = value.Clone();
            file.Save();
        }
        return Task.CompletedTask;
    }
}
