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
            QueueCapacity = options.Entries,
            BatchSize = options.BatchSize,
            SpillDirectory = spill,
            WriteTimeout = TimeSpan.FromSeconds(30),
            TrimInterval = TimeSpan.FromHours(1),
            Redaction = new RedactionOptions { Enabled = options.Redact },
        });
        var entries = CreateEntries(options);
        try
        {
            using var writer = new TrafficLogWriter(store, logOptions, new TrafficPrivacyPolicy(logOptions));
            await writer.StartAsync(cancellationToken).ConfigureAwait(false);
            var stopwatch = Stopwatch.StartNew();
            foreach (var entry in entries)
            {
                writer.Record(entry);
            }

            var statistics = writer.GetStatistics();
            while (statistics.Written + statistics.Replayed + statistics.Dropped < entries.Count)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(2), cancellationToken).ConfigureAwait(false);
                statistics = writer.GetStatistics();
            }

            stopwatch.Stop();
            await writer.StopAsync(cancellationToken).ConfigureAwait(false);
            return new TrafficLogBenchmarkResult(
                options.Label ?? store.GetType().Name,
                entries.Count,
                options.BatchSize,
                stopwatch.Elapsed,
                statistics.Written + statistics.Replayed,
                statistics.Dropped);
        }
        finally
        {
            if (Directory.Exists(spill))
            {
                Directory.Delete(spill, recursive: true);
            }
        }
    }

    private static List<TrafficEntry> CreateEntries(TrafficLogBenchmarkOptions options)
    {
        var random = new Random(42);
        var run = Guid.NewGuid().ToString("N")[..8];
        var start = DateTimeOffset.UtcNow;
        var entries = new List<TrafficEntry>(options.Entries);
        for (var i = 0; i < options.Entries; i++)
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
        string[] words = ["the", "adapter", "answer", "request", "model", "please", "reply", "with", "a", "short", "summary", "of", "call", "me", "at", "555-123-4567", "or", "mail", "user@example.com", "thanks"];
        var builder = new StringBuilder(length + 16);
        while (builder.Length < length)
        {
            builder.Append(words[random.Next(words.Length)]).Append(' ');
        }

        return builder.ToString(0, length);
    }
}
