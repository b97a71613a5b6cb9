using System.Text.Json;
using Microsoft.Extensions.Logging;
using TuneGateway.Storage.Serialization;

namespace TuneGateway.Storage;

/// <summary>
/// The embedded store's feedback: an append-only JSON-lines log of upserts and deletions, each with a
/// change sequence, replayed into memory on open and rewritten when most lines are superseded.
/// </summary>
internal sealed class FeedbackLog : IDisposable
{
    private readonly string _path;
    private readonly ILogger _logger;
    private readonly Dictionary<string, (Feedback Feedback, long Sequence)> _current = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(long Sequence, string Id)>> _byAdapter = new(StringComparer.Ordinal);
    private FileStream _stream;
    private long _lines;

    private FeedbackLog(string path, ILogger logger)
    {
        _path = path;
        _logger = logger;
        _stream = null!;
    }

    /// <summary>The latest change sequence.</summary>
    public long LastSequence { get; private set; }

    public static FeedbackLog Open(string path, ILogger logger)
    {
        var log = new FeedbackLog(path, logger);
        if (File.Exists(path))
        {
            var bytes = File.ReadAllBytes(path);
            var start = 0;
            for (var newline = Array.IndexOf(bytes, (byte)'\n'); newline >= 0; newline = Array.IndexOf(bytes, (byte)'\n', start))
            {
                try
                {
                    var line = JsonSerializer.Deserialize(bytes.AsSpan(start, newline - start), StorageJsonContext.Default.FeedbackLine);
                    if (line is not null)
                    {
                        log.Apply(line);
                    }
                }
                catch (JsonException ex)
                {
                    logger.LogWarning(ex, "Skipping an unreadable line at offset {Offset} of {Path}.", start, path);
                }

                log._lines++;
                start = newline + 1;
            }

            if (start < bytes.Length)
            {
                logger.LogWarning("Cutting a torn line of {Bytes} bytes off the end of {Path}.", bytes.Length - start, path);
                using var truncate = new FileStream(path, FileMode.Open, FileAccess.Write);
                truncate.SetLength(start);
            }
        }

        log._stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        return log;
    }

    public Feedback? Get(string id) => _current.TryGetValue(id, out var current) ? current.Feedback : null;

    public IEnumerable<string> Ids() => _current.Keys;

    public void Upsert(Feedback feedback)
    {
        var line = new FeedbackLine(LastSequence + 1, feedback, null);
        Write([line]);
        Apply(line);
    }

    /// <summary>Deletes feedback for the ids that have any; returns how many were deleted.</summary>
    public int Delete(IEnumerable<string> ids)
    {
        var lines = new List<FeedbackLine>();
        foreach (var id in ids)
        {
            if (_current.ContainsKey(id))
            {
                lines.Add(new FeedbackLine(LastSequence + lines.Count + 1, null, id));
            }
        }

        if (lines.Count > 0)
        {
            Write(lines);
            lines.ForEach(Apply);
        }

        return lines.Count;
    }

    /// <summary>Distinct ids of <paramref name="adapter"/> whose latest change is after <paramref name="after"/>.</summary>
    public long CountSince(string adapter, long after)
    {
        if (!_byAdapter.TryGetValue(adapter, out var changes))
        {
            return 0;
        }

        int low = 0, high = changes.Count;
        while (low < high)
        {
            var mid = low + ((high - low) / 2);
            if (changes[mid].Sequence <= after)
            {
                low = mid + 1;
            }
            else
            {
                high = mid;
            }
        }

        long count = 0;
        for (var i = low; i < changes.Count; i++)
        {
            if (_current.TryGetValue(changes[i].Id, out var current) && current.Sequence == changes[i].Sequence)
            {
                count++;
            }
        }

        return count;
    }

    /// <summary>Rewrites the file with only the live records once superseded lines dominate it.</summary>
    public void CompactIfWorthIt()
    {
        if (_lines <= (2 * _current.Count) + 1024)
        {
            return;
        }

        var temporary = _path + ".tmp";
        var live = _current.OrderBy(pair => pair.Value.Sequence).ToList();
        using (var output = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            foreach (var (_, (feedback, sequence)) in live)
            {
                output.Write(JsonSerializer.SerializeToUtf8Bytes(new FeedbackLine(sequence, feedback, null), StorageJsonContext.Default.FeedbackLine));
                output.WriteByte((byte)'\n');
            }

            output.Flush(flushToDisk: true);
        }

        _stream.Dispose();
        File.Move(temporary, _path, overwrite: true);
        _stream = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read);
        _lines = live.Count;
        _byAdapter.Clear();
        foreach (var (id, (feedback, sequence)) in live)
        {
            AdapterChanges(feedback.Adapter).Add((sequence, id));
        }

        _logger.LogDebug("Compacted {Path} to {Count} feedback records.", _path, live.Count);
    }

    public void Dispose() => _stream.Dispose();

    private void Write(IReadOnlyList<FeedbackLine> lines)
    {
        var before = _stream.Length;
        try
        {
            foreach (var line in lines)
            {
                _stream.Write(JsonSerializer.SerializeToUtf8Bytes(line, StorageJsonContext.Default.FeedbackLine));
                _stream.WriteByte((byte)'\n');
            }

            _stream.Flush(flushToDisk: true);
        }
        catch (IOException)
        {
            _stream.SetLength(before);
            throw;
        }

        _lines += lines.Count;
    }

    private void Apply(FeedbackLine line)
    {
        LastSequence = Math.Max(LastSequence, line.Seq);
        if (line.Feedback is { } feedback)
        {
            _current[feedback.Id] = (feedback, line.Seq);
            AdapterChanges(feedback.Adapter).Add((line.Seq, feedback.Id));
        }
        else if (line.Deleted is { } id)
        {
            _current.Remove(id);
        }
    }

    private List<(long Sequence, string Id)> AdapterChanges(string adapter)
    {
        if (!_byAdapter.TryGetValue(adapter, out var changes))
        {
            _byAdapter[adapter] = changes = [];
        }

        return changes;
    }
}
