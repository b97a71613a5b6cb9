using TuneGateway.Storage;

namespace TuneGateway.Tests.Storage;

/// <summary>A clock the test moves by hand (timers still run on real time).</summary>
internal sealed class ManualTimeProvider(DateTimeOffset now) : TimeProvider
{
    private DateTimeOffset _now = now;

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by) => _now += by;
}

/// <summary>A temporary directory, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tunegw-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort.
        }
    }
}

/// <summary>Bounded polling for asynchronous effects (never a fixed sleep, never a timing assertion).</summary>
internal static class Eventually
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    public static async Task TrueAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Timed out waiting until {what}.");
            }

            await Task.Delay(25);
        }
    }

    public static Task TrueAsync(Func<bool> condition, string what, TimeSpan? timeout = null) =>
        TrueAsync(() => Task.FromResult(condition()), what, timeout);
}

/// <summary>Builders of test entries.</summary>
internal static class Entries
{
    public static readonly DateTimeOffset T0 = new(2025, 3, 14, 12, 0, 0, TimeSpan.Zero);

    /// <summary>An entry with every field set to a distinctive value.</summary>
    public static TrafficEntry Full(string id, string? adapter = "support-bot", DateTimeOffset? timestamp = null) => new()
    {
        Id = id,
        RequestId = "req-" + id,
        Timestamp = timestamp ?? T0,
        ApiKeyId = "key-1",
        User = "user-42",
        RequestedModel = adapter ?? "base-model",
        Adapter = adapter,
        AdapterVersion = "v3",
        Arm = "b",
        Prompt = "[{\"role\":\"user\",\"content\":\"Hallo, wie geht's? \\n ünïcödé 🚀\"}]",
        Completion = "Line one\nLine two\ttabbed \"quoted\" 🚀",
        FinishReason = "stop",
        PromptTokens = 17,
        CompletionTokens = 9,
        MeanLogprob = -0.7312345678901234,
        TimeToFirstTokenMs = 12.345678,
        LatencyMs = 250.125,
        Status = 200,
        Error = "",
    };

    /// <summary>An entry with only the required fields.</summary>
    public static TrafficEntry Minimal(string id, string? adapter = null, DateTimeOffset? timestamp = null) => new()
    {
        Id = id,
        Timestamp = timestamp ?? T0,
        Adapter = adapter,
    };

    public static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");
}

/// <summary>
/// An in-memory store for unit tests of the writer: idempotent by id like the real stores, and able to
/// be switched off (unavailable), made to fail, or made to hang.
/// </summary>
internal sealed class FakeTrafficStore : ITrafficStore
{
    private readonly object _sync = new();
    private readonly List<TrafficEntry> _entries = [];
    private readonly HashSet<string> _ids = new(StringComparer.Ordinal);
    private TaskCompletionSource _gate = CompletedGate();

    public bool Available { get; set; } = true;

    public bool Fail { get; set; }

    public int AppendCalls;

    public long AvailabilityChecks;

    public bool IsAvailable
    {
        get
        {
            Interlocked.Increment(ref AvailabilityChecks);
            return Available;
        }
    }

    public IReadOnlyList<TrafficEntry> Entries
    {
        get
        {
            lock (_sync)
            {
                return [.. _entries];
            }
        }
    }

    /// <summary>Makes appends wait until <see cref="Release"/>.</summary>
    public void Hold() => _gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Release() => _gate.TrySetResult();

    public async Task<int> AppendAsync(IReadOnlyList<TrafficEntry> entries, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref AppendCalls);
        var copy = entries.ToList();
        await _gate.Task.WaitAsync(cancellationToken);
        if (Fail || !Available)
        {
            throw new IOException("The fake store is failing.");
        }

        lock (_sync)
        {
            var added = 0;
            foreach (var entry in copy)
            {
                if (_ids.Add(entry.Id))
                {
                    _entries.Add(entry);
                    added++;
                }
            }

            return added;
        }
    }

    public Task<TrafficRecord?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        if (Fail)
        {
            throw new IOException("The fake store is failing.");
        }

        lock (_sync)
        {
            var entry = _entries.FirstOrDefault(e => e.Id == id);
            return Task.FromResult(entry is null ? null : new TrafficRecord(default, entry, null));
        }
    }

    public Task<TrafficPage> QueryAsync(TrafficQuery query, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public Task<IReadOnlyList<AdapterTrafficSummary>> ListAdaptersAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public Task<FeedbackCount> CountFeedbackSinceAsync(string adapter, string? cursor, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public Task<FeedbackResult> UpsertFeedbackAsync(FeedbackInput feedback, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public Task<TrimResult> TrimAsync(CancellationToken cancellationToken = default) => Task.FromResult(new TrimResult(0, 0));

    private static TaskCompletionSource CompletedGate()
    {
        var gate = new TaskCompletionSource();
        gate.SetResult();
        return gate;
    }
}
