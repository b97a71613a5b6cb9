using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;

namespace TuneGateway.Storage;

/// <summary>Settings of <see cref="TrafficLogBenchmark.RunAsync"/>.</summary>
public sealed record TrafficLogBenchmarkOptions
{
    /// <summary>Entries to write.</summary>
    public int Entries { get; init; } = 20_000;

    /// <summary>Entries written before timing starts, so that the JIT has settled.</summary>
    public int WarmupEntries { get; init; } = 2_000;

    /// <summary>Writer batch size.</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>Prompt length in characters.</summary>
    public int PromptChars { get; init; } = 1_000;

    /// <summary>Completion length in characters.</summary>
    public int CompletionChars { get; init; } = 400;

    /// <summary>Whether the default redaction runs (it is part of the writer's cost).</summary>
    public bool Redact { get; init; } = true;

    /// <summary>Adapter (stream) the entries go to.</summary>
    public string Adapter { get; init; } = "bench";

    /// <summary>Label of the table row; defaults to the store's type name.</summary>
    public string? Label { get; init; }
}

/// <summary>What <see cref="TrafficLogBenchmark.RunAsync"/> measured.</summary>
/// <param name="Store">Label of the store.</param>
/// <param name="Entries">Entries recorded.</param>
/// <param name="BatchSize">Writer batch size.</param>
/// <param name="Elapsed">From the first <see cref="ITrafficLog.Record"/> until every entry was written or dropped.</param>
/// <param name="Written">Entries that reached the store (directly or through the spill).</param>
/// <param name="Dropped">Entries dropped.</param>
public sealed record TrafficLogBenchmarkResult(string Store, int Entries, int BatchSize, TimeSpan Elapsed, long Written, long Dropped)
{
    /// <summary>Markdown table header matching <see cref="ToTableRow"/>.</summary>
    public const string TableHeader = "| store | entries | batch | seconds | entries/s | dropped |\n|---|---:|---:|---:|---:|---:|";

    /// <summary>Entries per second the writer sustained.</summary>
    public double EntriesPerSecond => Written / Math.Max(Elapsed.TotalSeconds, 1e-9);

    /// <summary>The result as a markdown table row.</summary>
    public string ToTableRow() => string.Create(
        CultureInfo.InvariantCulture,
        $"| {Store} | {Entries} | {BatchSize} | {Elapsed.TotalSeconds:F2} | {EntriesPerSecond:F0} | {Dropped} |");
}

/// <summary>
/// Measures how many entries per second the traffic log writer sustains against a store: it records
/// synthetic entries (redaction included) as fast as it can and times until all of them are written.
/// </summary>
/// <remarks>The entries stay in the store; point it at a scratch key prefix or data directory.</remarks>
public static class TrafficLogBenchmark
{
    /// <summary>Runs the benchmark.</summary>
    public static async Task<TrafficLogBenchmarkResult> RunAsync(
        ITrafficStore store,
        TrafficLogBenchmarkOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        options ??= new TrafficLogBenchmarkOptions();
        var spill = Path.Combine(Path.GetTempPath(), "tunegw-bench-spill-" + Guid.NewGuid().ToString("N"));
        var logOptions = Options.Create(new TrafficLogOptions
        {
            QueueCapacity = Math.Max(options.Entries, options.WarmupEntries),
            BatchSize = options.BatchSize,
            SpillDirectory = spill,
            WriteTimeout = TimeSpan.FromSeconds(30),
            TrimInterval = TimeSpan.FromHours(1),
            Redaction = new RedactionOptions { Enabled = options.Redact },
        });
        var warmup = CreateEntries(options, options.WarmupEntries);
        var entries = CreateEntries(options, options.Entries);
        try
        {
            using var writer = new TrafficLogWriter(store, logOptions, new TrafficPrivacyPolicy(logOptions));
            await writer.StartAsync(cancellationToken).ConfigureAwait(false);
            var before = await RecordAllAsync(writer, warmup, writer.GetStatistics(), cancellationToken).ConfigureAwait(false);
            var stopwatch = Stopwatch.StartNew();
            var after = await RecordAllAsync(writer, entries, before, cancellationToken).ConfigureAwait(false);
            stopwatch.Stop();
            await writer.StopAsync(cancellationToken).ConfigureAwait(false);
            return new TrafficLogBenchmarkResult(
                options.Label ?? store.GetType().Name,
                entries.Count,
                options.BatchSize,
                stopwatch.Elapsed,
                after.Written + after.Replayed - before.Written - before.Replayed,
                after.Dropped - before.Dropped);
        }
        finally
        {
            if (Directory.Exists(spill))
            {
                Directory.Delete(spill, recursive: true);
            }
        }
    }

    /// <summary>Records the entries and waits until the writer has written or dropped all of them.</summary>
    private static async Task<TrafficLogStatistics> RecordAllAsync(
        TrafficLogWriter writer,
        List<TrafficEntry> entries,
        TrafficLogStatistics before,
        CancellationToken cancellationToken)
    {
        foreach (var entry in entries)
        {
            writer.Record(entry);
        }

        var target = before.Written + before.Replayed + before.Dropped + entries.Count;
        var statistics = writer.GetStatistics();
        while (statistics.Written + statistics.Replayed + statistics.Dropped < target)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(2), cancellationToken).ConfigureAwait(false);
            statistics = writer.GetStatistics();
        }

        return statistics;
    }

    private static List<TrafficEntry> CreateEntries(TrafficLogBenchmarkOptions options, int count)
    {
        var random = new Random(42);
        var run = Guid.NewGuid().ToString("N")[..8];
        var start = DateTimeOffset.UtcNow;
        var entries = new List<TrafficEntry>(count);
        for (var i = 0; i < count; i++)
        {
            entries.Add(new TrafficEntry
            {
                Id = string.Create(CultureInfo.InvariantCulture, $"chatcmpl-bench-{run}-{i}"),
                RequestId = string.Create(CultureInfo.InvariantCulture, $"req-{run}-{i}"),
                Timestamp = start.AddMilliseconds(i),
                ApiKeyId = "key-bench",
                User = "bench-user",
                RequestedModel = options.Adapter,
                Adapter = options.Adapter,
                AdapterVersion = "v1",
                Arm = i % 2 == 0 ? "a" : "b",
                Prompt = Text(random, options.PromptChars),
                Completion = Text(random, options.CompletionChars),
                FinishReason = "stop",
                PromptTokens = options.PromptChars / 4,
                CompletionTokens = options.CompletionChars / 4,
                TimeToFirstTokenMs = 12.5,
                LatencyMs = 250,
                Status = 200,
            });
        }

        return entries;
    }

    private static string Text(Random random, int length)
    {
        // Ordinary prose with about one redactable token per hundred words, so redaction has work to do.
        string[] words =
        [
            "the", "adapter", "answer", "request", "model", "please", "reply", "with", "a", "short", "summary", "of",
            "this", "document", "and", "list", "three", "points", "about", "it", "in", "plain", "English", "for", "our",
            "customers", "who", "asked", "yesterday", "2024", "version", "1.2.3", "order", "42", "thanks",
        ];
        string[] personal = ["555-123-4567", "jane.doe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958"];
        var builder = new StringBuilder(length + 32);
        while (builder.Length < length)
        {
            builder.Append(random.Next(100) == 0 ? personal[random.Next(personal.Length)] : words[random.Next(words.Length)]).Append(' ');
        }

        return builder.ToString(0, length);
    }
}
