using System.Text.Json;
using Microsoft.Extensions.Logging;
using TorchSharp;
using TuneGateway.Controller.Statistics;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Tokenization;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Training;
using static TorchSharp.torch;

namespace TuneGateway.Controller.Pipelines;

/// <summary>Mean-pooled hidden states of the base model for texts (semantic drift).</summary>
public interface IEmbeddingProvider
{
    Task<float[][]> EmbedAsync(IReadOnlyList<string> texts, CancellationToken cancellationToken);
}

/// <summary>
/// Embeddings from a copy of the base model loaded by the controller (CPU by default). Fine for
/// small bases; for large ones turn semantic drift off or give the controller a GPU.
/// </summary>
public sealed class ModelEmbeddingProvider(CausalLanguageModel model, HfTokenizer tokenizer, int maxTokens = 128) : IEmbeddingProvider, IDisposable
{
    private readonly Lock _lock = new();

    public Task<float[][]> EmbedAsync(IReadOnlyList<string> texts, CancellationToken cancellationToken) => Task.Run(() =>
    {
        lock (_lock)
        {
            var result = new float[texts.Count][];
            for (int start = 0; start < texts.Count; start += 16)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = texts.Skip(start).Take(16).Select(t => tokenizer.Encode(t, true).Take(maxTokens).DefaultIfEmpty(0).ToArray()).ToArray();
                int length = batch.Max(b => b.Length);
                var ids = new long[batch.Length * length];
                var mask = new bool[batch.Length * length];
                for (int b = 0; b < batch.Length; b++)
                    for (int t = 0; t < batch[b].Length; t++) { ids[b * length + t] = batch[b][t]; mask[b * length + t] = true; }
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var pooled = model.MeanPooledHiddenStates(torch.tensor(ids, device: model.Device).view(batch.Length, length),
                    torch.tensor(mask, device: model.Device).view(batch.Length, length)).cpu();
                for (int b = 0; b < batch.Length; b++) result[start + b] = pooled[b].data<float>().ToArray();
            }
            return result;
        }
    }, cancellationToken);

    public void Dispose() => model.Dispose();
}

/// <summary>One drift check, kept as history.</summary>
public sealed record DriftCheck(DateTimeOffset At, string? ProductionVersion, DriftReport Report, string ReferenceSource);

/// <summary>
/// Compares an adapter's current traffic with its reference profile: the production version's
/// training data (prompt/completion lengths, prompt tokens, prompt embeddings) or, for a version
/// without any, its first production window (which also gives latency and log-probability
/// references). Results are kept as history; an alarm is the drift event the pipeline's trigger
/// reacts to.
/// </summary>
public sealed class DriftMonitor(LifecycleManager lifecycle, ITrafficReader traffic, HfTokenizer tokenizer, IEmbeddingProvider? embeddings,
    ControllerOptions options, ILogger<DriftMonitor> logger, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly DriftDetector _detector = new();
    internal const string ReferenceKey = "drift_reference";
    public const string HistoryKey = LifecycleJson.DriftHistoryKey;
    private const int HistoryLength = 200;

    /// <summary>Requests in the current window (the most recent ones).</summary>
    public int WindowSize { get; init; } = 300;
    /// <summary>Prompts embedded per window (MMD is quadratic in this).</summary>
    public int EmbeddingSample { get; init; } = 100;

    public async Task<DriftCheck?> CheckAsync(PipelineDefinition pipeline, CancellationToken cancellationToken)
    {
        string adapter = pipeline.Adapter;
        var production = await lifecycle.ProductionAsync(adapter, cancellationToken).ConfigureAwait(false);
        var recent = await RecentAsync(adapter, production?.Version, WindowSize, cancellationToken).ConfigureAwait(false);
        if (recent.Count == 0) return null;

        var (profile, source) = await ReferenceAsync(adapter, production, cancellationToken).ConfigureAwait(false);
        if (profile is null) return null;

        var window = await WindowAsync(recent.Select(r => r.Entry).ToArray(), cancellationToken).ConfigureAwait(false);
        var report = _detector.Compare(profile, window, pipeline.Drift);
        var check = new DriftCheck(_time.GetUtcNow(), production?.Version, report, source);
        await AppendHistoryAsync(adapter, check, cancellationToken).ConfigureAwait(false);
        ControllerTelemetry.RecordDrift(adapter, report);
        if (report.DriftDetected) logger.LogWarning("Drift on {Adapter}: {Alarms}", adapter, string.Join("; ", report.Alarms));
        return check;
    }

    public async Task<IReadOnlyList<DriftCheck>> HistoryAsync(string adapter, CancellationToken cancellationToken)
    {
        var stored = await lifecycle.Pipelines.GetStateAsync(adapter, HistoryKey, cancellationToken).ConfigureAwait(false);
        return stored is { ValueKind: JsonValueKind.Array } s ? s.Deserialize<List<DriftCheck>>(PipelineDefinition.Json) ?? [] : [];
    }

    private async Task AppendHistoryAsync(string adapter, DriftCheck check, CancellationToken cancellationToken)
    {
        var history = (await HistoryAsync(adapter, cancellationToken).ConfigureAwait(false)).ToList();
        history.Add(check);
        if (history.Count > HistoryLength) history.RemoveRange(0, history.Count - HistoryLength);
        await lifecycle.SavePipelineStateAsync(adapter, HistoryKey, JsonSerializer.SerializeToElement(history, PipelineDefinition.Json), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The reference for the current production version, built once and stored.</summary>
    private async Task<(DriftProfile? Profile, string Source)> ReferenceAsync(string adapter, Storage.Lifecycle.RegisteredVersion? production, CancellationToken cancellationToken)
    {
        string key = $"{ReferenceKey}:{production?.Version ?? "none"}";
        var stored = await lifecycle.Pipelines.GetStateAsync(adapter, key, cancellationToken).ConfigureAwait(false);
        if (stored is { ValueKind: JsonValueKind.Object } s && s.TryGetProperty("profile", out var p))
            return (DriftProfile.FromJson(p.GetString()!), s.GetProperty("source").GetString()!);

        DriftProfile? profile = null;
        string source;
        var training = production?.DatasetId is { } dataset
            ? Curator.ReadJsonLines(Path.Combine(options.ArtifactDirectory, adapter, "datasets", dataset, "train.jsonl"))
            : [];
        if (training.Count >= 50)
        {
            var window = await WindowAsync(training.Select(e => new TrafficEntry
            {
                Id = "-", Timestamp = default, Prompt = e.Prompt, Completion = e.Completion, LatencyMs = 0,
            }).ToArray(), cancellationToken, includeServingFeatures: false).ConfigureAwait(false);
            profile = DriftProfile.FromWindow(window, createdAt: _time.GetUtcNow());
            source = $"training data of {production!.Version} ({training.Count} examples)";
        }
        else
        {
            // No training data: the first production window of this version is the reference.
            var first = await FirstWindowAsync(adapter, production, cancellationToken).ConfigureAwait(false);
            if (first.Count < WindowSize) return (null, "waiting for a first production window");
            profile = DriftProfile.FromWindow(await WindowAsync(first.Select(r => r.Entry).ToArray(), cancellationToken).ConfigureAwait(false), createdAt: _time.GetUtcNow());
            source = $"first production window of {production?.Version ?? "the base model"} ({first.Count} requests)";
        }
        await lifecycle.SavePipelineStateAsync(adapter, key, JsonSerializer.SerializeToElement(new { profile = profile.ToJson(), source }), cancellationToken).ConfigureAwait(false);
        return (profile, source);
    }

    private async Task<DriftWindow> WindowAsync(IReadOnlyList<TrafficEntry> entries, CancellationToken cancellationToken, bool includeServingFeatures = true)
    {
        var window = new DriftWindow();
        var sample = new List<string>();
        foreach (var e in entries)
        {
            var ids = tokenizer.Encode(e.Prompt ?? "", addSpecialTokens: false);
            window.Add(new DriftObservation
            {
                PromptTokenIds = ids,
                PromptLength = ids.Count,
                CompletionLength = e.CompletionTokens ?? (e.Completion is null ? null : tokenizer.Encode(e.Completion, false).Count),
                LatencyMs = includeServingFeatures ? e.LatencyMs : null,
            });
            if (sample.Count < EmbeddingSample && e.Prompt is not null) sample.Add(e.Prompt);
        }
        if (embeddings is not null && sample.Count > 0)
            foreach (var vector in await embeddings.EmbedAsync(sample, cancellationToken).ConfigureAwait(false)) window.AddEmbedding(vector);
        return window;
    }

    /// <summary>The newest requests served by <paramref name="version"/> (all versions when null).</summary>
    private async Task<List<TrafficRecord>> RecentAsync(string adapter, string? version, int count, CancellationToken cancellationToken)
    {
        var all = new List<TrafficRecord>();
        string? cursor = null;
        do
        {
            var page = await traffic.QueryAsync(new TrafficQuery { Adapter = adapter, Since = _time.GetUtcNow().AddDays(-30), Limit = TrafficQuery.MaxLimit, Cursor = cursor, IncludeFeedback = false },
                cancellationToken).ConfigureAwait(false);
            all.AddRange(page.Items.Where(r => version is null || r.Entry.AdapterVersion == version));
            if (all.Count > count * 4) all.RemoveRange(0, all.Count - count);
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        return all.TakeLast(count).ToList();
    }

    private async Task<List<TrafficRecord>> FirstWindowAsync(string adapter, Storage.Lifecycle.RegisteredVersion? version, CancellationToken cancellationToken)
    {
        var result = new List<TrafficRecord>();
        string? cursor = null;
        do
        {
            var page = await traffic.QueryAsync(new TrafficQuery { Adapter = adapter, Since = version?.UpdatedAt ?? _time.GetUtcNow().AddDays(-30), Limit = TrafficQuery.MaxLimit, Cursor = cursor, IncludeFeedback = false },
                cancellationToken).ConfigureAwait(false);
            result.AddRange(page.Items.Where(r => version is null || r.Entry.AdapterVersion == version.Version));
            cursor = result.Count >= WindowSize ? null : page.NextCursor;
        }
        while (cursor is not null);
        return result.Take(WindowSize).ToList();
    }
}
