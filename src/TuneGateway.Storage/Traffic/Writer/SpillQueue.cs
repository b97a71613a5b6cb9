using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using TuneGateway.Storage.Serialization;

namespace TuneGateway.Storage;

/// <summary>
/// A FIFO of traffic entries on local disk, used while the store is unreachable: JSON-lines segment
/// files <c>spill-{n}.jsonl</c>, appended and fsynced a batch at a time, read back from the oldest, and
/// deleted once replayed. It holds at most <c>maxBytes</c> of unreplayed entries.
/// </summary>
/// <remarks>
/// Only the writer's loop touches it, so it is not thread-safe; the counters are read from other threads.
/// The read position lives in memory, so after a restart the oldest segment is replayed from its start:
/// appends are idempotent by id, so entries already replayed are not stored twice.
/// </remarks>
internal sealed class SpillQueue : IDisposable
{
    private const string Prefix = "spill-";
    private const string Suffix = ".jsonl";

    private readonly string _directory;
    private readonly long _maxBytes;
    private readonly long _segmentBytes;
    private readonly ILogger _logger;
    private readonly SortedDictionary<int, (long Length, long Entries)> _segments = [];
    private FileStream? _writer;
    private FileStream? _lock;
    private int _writerSegment = -1;
    private int _nextSegment = 1;
    private long _headOffset;
    private long _pendingBytes;
    private long _pendingEntries;

    public SpillQueue(string directory, long maxBytes, ILogger logger)
    {
        _directory = Path.GetFullPath(directory);
        _maxBytes = maxBytes;
        _segmentBytes = Math.Clamp(maxBytes / 8, 64 * 1024, 16 * 1024 * 1024);
        _logger = logger;
    }

    /// <summary>Entries waiting for replay.</summary>
    public long PendingEntries => Interlocked.Read(ref _pendingEntries);

    /// <summary>Bytes waiting for replay.</summary>
    public long PendingBytes => Interlocked.Read(ref _pendingBytes);

    public bool HasPending => PendingEntries > 0;

    /// <summary>Takes the directory (one process at a time) and finds segments left by an earlier run, cutting off a torn last line.</summary>
    /// <exception cref="IOException">The directory is unusable or another process spills into it.</exception>
    public void Open()
    {
        Directory.CreateDirectory(_directory);
        try
        {
            _lock = new FileStream(Path.Combine(_directory, ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new IOException($"The spill directory '{_directory}' is in use by another process.", ex);
        }

        foreach (var path in Directory.EnumerateFiles(_directory, Prefix + "*" + Suffix))
        {
            var name = Path.GetFileName(path);
            if (!int.TryParse(name.AsSpan(Prefix.Length, name.Length - Prefix.Length - Suffix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var number))
            {
                continue;
            }

            var (entries, complete, length) = CountLines(path);
            if (complete < length)
            {
                _logger.LogWarning("Cutting a torn line of {Bytes} bytes off the end of {Path}.", length - complete, path);
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
                stream.SetLength(complete);
            }

            if (entries == 0)
            {
                File.Delete(path);
                continue;
            }

            _segments[number] = (complete, entries);
            _pendingBytes += complete;
            _pendingEntries += entries;
            _nextSegment = Math.Max(_nextSegment, number + 1);
        }

        if (_pendingEntries > 0)
        {
            _logger.LogInformation("Found {Entries} spilled traffic entries ({Bytes} bytes) in {Directory} to replay.", _pendingEntries, _pendingBytes, _directory);
        }
    }

    /// <summary>
    /// Appends entries, refusing those that would take the spill past its bound.
    /// </summary>
    /// <returns>The entries refused for lack of room.</returns>
    /// <exception cref="IOException">The disk write failed; nothing of the batch is kept.</exception>
    public List<TrafficEntry> Append(IReadOnlyList<TrafficEntry> entries)
    {
        var refused = new List<TrafficEntry>();
        var lines = new List<byte[]>(entries.Count);
        var room = _maxBytes - PendingBytes;
        foreach (var entry in entries)
        {
            var line = JsonSerializer.SerializeToUtf8Bytes(entry, StorageJsonContext.Default.TrafficEntry);
            if (line.Length + 1 > room)
            {
                refused.Add(entry);
                continue;
            }

            room -= line.Length + 1;
            lines.Add(line);
        }

        if (lines.Count == 0)
        {
            return refused;
        }

        if (_writer is null || _writer.Length >= _segmentBytes)
        {
            StartSegment();
        }

        var before = _writer!.Length;
        try
        {
            foreach (var line in lines)
            {
                _writer.Write(line);
                _writer.WriteByte((byte)'\n');
            }

            _writer.Flush(flushToDisk: true);
        }
        catch
        {
            try
            {
                _writer.SetLength(before);
            }
            catch (IOException)
            {
                // A torn tail is cut off the next time the spill is opened.
            }

            throw;
        }

        var written = _writer.Length - before;
        var (length, count) = _segments[_writerSegment];
        _segments[_writerSegment] = (length + written, count + lines.Count);
        Interlocked.Add(ref _pendingBytes, written);
        Interlocked.Add(ref _pendingEntries, lines.Count);
        return refused;
    }

    /// <summary>Reads up to <paramref name="maxEntries"/> of the oldest entries without consuming them.</summary>
    public SpillChunk Peek(int maxEntries)
    {
        if (_segments.Count == 0)
        {
            return new SpillChunk([], 0, -1, 0, 0);
        }

        var (number, (length, _)) = _segments.First();
        var entries = new List<TrafficEntry>();
        var unreadable = 0;
        var position = _headOffset;
        using var handle = File.OpenHandle(SegmentPath(number), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var buffer = new byte[64 * 1024];
        var filled = 0;
        while (entries.Count + unreadable < maxEntries && position < length)
        {
            var lineEnd = buffer.AsSpan(0, filled).IndexOf((byte)'\n');
            if (lineEnd < 0)
            {
                if (filled == buffer.Length)
                {
                    Array.Resize(ref buffer, buffer.Length * 2);
                }

                var toRead = (int)Math.Min(buffer.Length - filled, length - position - filled);
                var read = toRead > 0 ? RandomAccess.Read(handle, buffer.AsSpan(filled, toRead), position + filled) : 0;
                if (read == 0)
                {
                    break;
                }

                filled += read;
                continue;
            }

            try
            {
                entries.Add(JsonSerializer.Deserialize(buffer.AsSpan(0, lineEnd), StorageJsonContext.Default.TrafficEntry)!);
            }
            catch (JsonException ex)
            {
                _logger.LogWarning(ex, "Dropping an unreadable spilled entry in {Path}.", SegmentPath(number));
                unreadable++;
            }

            position += lineEnd + 1;
            filled -= lineEnd + 1;
            Buffer.BlockCopy(buffer, lineEnd + 1, buffer, 0, filled);
        }

        return new SpillChunk(entries, unreadable, number, position, position - _headOffset);
    }

    /// <summary>Consumes a chunk returned by <see cref="Peek"/>; deletes the segment once it is used up.</summary>
    public void Acknowledge(SpillChunk chunk)
    {
        if (chunk.Segment < 0)
        {
            return;
        }

        _headOffset = chunk.EndOffset;
        Interlocked.Add(ref _pendingBytes, -chunk.Bytes);
        Interlocked.Add(ref _pendingEntries, -(chunk.Entries.Count + chunk.Unreadable));
        var (length, _) = _segments[chunk.Segment];
        if (_headOffset < length)
        {
            return;
        }

        if (chunk.Segment == _writerSegment)
        {
            _writer?.Dispose();
            _writer = null;
            _writerSegment = -1;
        }

        File.Delete(SegmentPath(chunk.Segment));
        _segments.Remove(chunk.Segment);
        _headOffset = 0;
    }

    public void Dispose()
    {
        _writer?.Dispose();
        _writer = null;
        _lock?.Dispose();
        _lock = null;
    }

    private void StartSegment()
    {
        _writer?.Dispose();
        _writerSegment = _nextSegment++;
        _writer = new FileStream(SegmentPath(_writerSegment), FileMode.Append, FileAccess.Write, FileShare.Read | FileShare.Delete);
        _segments[_writerSegment] = (0, 0);
    }

    /// <summary>Counts complete lines; returns the count, the length up to the last newline, and the file length.</summary>
    private static (long Lines, long Complete, long Length) CountLines(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        var buffer = new byte[64 * 1024];
        long lines = 0, complete = 0, offset = 0;
        int read;
        while ((read = stream.Read(buffer)) > 0)
        {
            var chunk = buffer.AsSpan(0, read);
            var count = chunk.Count((byte)'\n');
            if (count > 0)
            {
                lines += count;
                complete = offset + chunk.LastIndexOf((byte)'\n') + 1;
            }

            offset += read;
        }

        return (lines, complete, offset);
    }

    private string SegmentPath(int number) =>
        Path.Combine(_directory, string.Create(CultureInfo.InvariantCulture, $"{Prefix}{number:D8}{Suffix}"));
}

/// <summary>Entries read from the head of the spill, and where reading stopped.</summary>
internal sealed record SpillChunk(List<TrafficEntry> Entries, int Unreadable, int Segment, long EndOffset, long Bytes);
