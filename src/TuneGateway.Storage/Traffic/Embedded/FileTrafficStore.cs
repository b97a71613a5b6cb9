using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using TuneGateway.Storage.Serialization;

namespace TuneGateway.Storage;

/// <summary>
/// The embedded store: the same contract as <see cref="RedisTrafficStore"/>, in files under
/// <c>{DataDirectory}/traffic</c>, so that a single-machine gateway needs nothing installed.
/// </summary>
/// <remarks>
/// <para>Layout: <c>logs/{adapter-dir}/</c> per adapter holds <c>name</c> (the adapter name),
/// append-only JSON-lines segments <c>{n}.jsonl</c> (one <c>{"position","entry"}</c> object per line) with a
/// derived index <c>{n}.idx</c> (<c>position, offset, length, id</c> per line), and <c>state</c> (trim
/// low-water mark and last position). <c>feedback.jsonl</c> is an append-only log of feedback upserts and
/// deletions, compacted when mostly superseded. <c>.lock</c> keeps a second process out.</para>
/// <para>Every append is flushed to disk (<c>fsync</c>) before it returns. After a crash a torn last line
/// is cut off and a missing or short index is rebuilt from its segment. Trimming is exact and immediate
/// for readers; a segment file is deleted once all of its entries are trimmed.</para>
/// <para>The whole index lives in memory (roughly 100 bytes plus the id per retained entry); operations
/// are serialised by one lock.</para>
/// </remarks>
public sealed class FileTrafficStore : ITrafficStore, IDisposable
{
    private static readonly byte[] NewLine = "\n"u8.ToArray();

    private readonly TrafficLogOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _root;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<string, AdapterLog> _logs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IndexedEntry> _byId = new(StringComparer.Ordinal);
    private FeedbackLog? _feedback;
    private FileStream? _lock;
    private bool _opened;
    private bool _disposed;

    /// <summary>Creates the store; files are opened on first use.</summary>
    public FileTrafficStore(IOptions<TrafficLogOptions> options, TimeProvider? timeProvider = null, ILogger<FileTrafficStore>? logger = null)
    {
        _options = options.Value;
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _root = Path.GetFullPath(Path.Combine(_options.DataDirectory, "traffic"));
    }

    /// <summary>The directory holding the store's files.</summary>
    public string RootDirectory => _root;

    /// <inheritdoc />
    public bool IsAvailable => !_disposed;

    /// <inheritdoc />
    public async Task<int> AppendAsync(IReadOnlyList<TrafficEntry> entries, CancellationToken cancellationToken = default)
    {
        TrafficEntry.ThrowIfAnyInvalid(entries, nameof(entries));
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            EnsureOpen();
            var batchIds = new HashSet<string>(StringComparer.Ordinal);
            var perLog = new Dictionary<AdapterLog, List<TrafficEntry>>();
            foreach (var entry in entries)
            {
                if (_byId.ContainsKey(entry.Id) || !batchIds.Add(entry.Id))
                {
                    continue;
                }

                var log = GetOrCreateLog(entry.StreamName);
                if (!perLog.TryGetValue(log, out var list))
                {
                    perLog[log] = list = [];
                }

                list.Add(entry);
            }

            var added = 0;
            var now = _time.GetUtcNow();
            foreach (var (log, list) in perLog)
            {
                added += log.Append(list, _options.SegmentMaxBytes, _byId);
                RemoveTrimmed(log, log.Trim(_options.MaxEntriesPerStream, Cutoff(now), persist: false));
            }

            return added;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async Task<TrafficRecord?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            EnsureOpen();
            if (!_byId.TryGetValue(id, out var indexed))
            {
                return null;
            }

            var entry = indexed.Log.Read([indexed])[0];
            return new TrafficRecord(indexed.Position, entry, _feedback!.Get(id));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async Task<TrafficPage> QueryAsync(TrafficQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentException.ThrowIfNullOrEmpty(query.Adapter, nameof(query));
        var after = query.After;
        var limit = query.EffectiveLimit;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            EnsureOpen();
            if (!_logs.TryGetValue(query.Adapter, out var log))
            {
                return new TrafficPage([], null);
            }

            var from = after is { } a ? log.IndexAfter(a)
                : query.Since is { } since ? log.IndexAtOrAfter(new LogPosition(LogPosition.MillisecondsOf(since), 0))
                : log.Start;
            var until = query.Until is { } u ? new LogPosition(LogPosition.MillisecondsOf(u), 0) : (LogPosition?)null;
            var selected = new List<IndexedEntry>(limit + 1);
            for (var i = from; i < log.Entries.Count && selected.Count <= limit; i++)
            {
                var candidate = log.Entries[i];
                if (until is { } end && candidate.Position >= end)
                {
                    break;
                }

                selected.Add(candidate);
            }

            var more = selected.Count > limit;
            if (more)
            {
                selected.RemoveAt(selected.Count - 1);
            }

            var entries = log.Read(selected);
            var items = new TrafficRecord[selected.Count];
            for (var i = 0; i < items.Length; i++)
            {
                items[i] = new TrafficRecord(
                    selected[i].Position,
                    entries[i],
                    query.IncludeFeedback ? _feedback!.Get(selected[i].Id) : null);
            }

            return new TrafficPage(items, more ? items[^1].Position.ToString() : null);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<AdapterTrafficSummary>> ListAdaptersAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            EnsureOpen();
            return _logs.Values
                .Select(log => new AdapterTrafficSummary(log.Name, log.Count))
                .OrderBy(summary => summary.Adapter, StringComparer.Ordinal)
                .ToArray();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async Task<FeedbackResult> UpsertFeedbackAsync(FeedbackInput feedback, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(feedback);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            EnsureOpen();
            if (!_byId.TryGetValue(feedback.Id, out var indexed))
            {
                return new FeedbackResult(FeedbackStatus.NotFound, Error: $"No logged request has id '{feedback.Id}'.");
            }

            var now = _time.GetUtcNow();
            var previous = _feedback!.Get(feedback.Id);
            var stored = feedback.ToStored(indexed.Log.Name, previous, now);
            _feedback.Upsert(stored);
            return new FeedbackResult(previous is null ? FeedbackStatus.Created : FeedbackStatus.Updated, stored);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async Task<FeedbackCount> CountFeedbackSinceAsync(string adapter, string? cursor, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        var after = FeedbackCursor.Parse(cursor);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            EnsureOpen();
            var high = _feedback!.LastSequence;
            return new FeedbackCount(_feedback.CountSince(adapter, after), FeedbackCursor.Format(Math.Max(high, after)));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public async Task<TrimResult> TrimAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            EnsureOpen();
            var cutoff = Cutoff(_time.GetUtcNow());
            long entriesRemoved = 0, feedbackRemoved = 0;
            foreach (var log in _logs.Values)
            {
                var removed = log.Trim(_options.MaxEntriesPerStream, cutoff, persist: true);
                entriesRemoved += removed.Count;
                feedbackRemoved += RemoveTrimmed(log, removed);
            }

            _feedback!.CompactIfWorthIt();
            return new TrimResult(entriesRemoved, feedbackRemoved);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Persists trim state and closes every file.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _gate.Wait();
        try
        {
            _disposed = true;
            foreach (var log in _logs.Values)
            {
                try
                {
                    log.SaveState();
                }
                catch (IOException ex)
                {
                    _logger.LogWarning(ex, "Could not save the trim state of {Adapter}.", log.Name);
                }

                log.Dispose();
            }

            _feedback?.Dispose();
            _lock?.Dispose();
        }
        finally
        {
            _gate.Release();
        }
    }

    private LogPosition? Cutoff(DateTimeOffset now) =>
        _options.MaxAge is { } age ? new LogPosition(LogPosition.MillisecondsOf(now - age), 0) : null;

    private int RemoveTrimmed(AdapterLog log, List<IndexedEntry> removed)
    {
        if (removed.Count == 0)
        {
            return 0;
        }

        foreach (var entry in removed)
        {
            if (_byId.TryGetValue(entry.Id, out var current) && ReferenceEquals(current, entry))
            {
                _byId.Remove(entry.Id);
            }
        }

        _logger.LogDebug("Trimmed {Count} entries from {Adapter}.", removed.Count, log.Name);
        return _feedback!.Delete(removed.Select(entry => entry.Id));
    }

    private void EnsureOpen()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_opened)
        {
            return;
        }

        var logsDirectory = Path.Combine(_root, "logs");
        Directory.CreateDirectory(logsDirectory);
        try
        {
            _lock = new FileStream(Path.Combine(_root, ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new IOException($"The traffic store in '{_root}' is in use by another process.", ex);
        }

        try
        {
            Load(logsDirectory);
            _opened = true;
        }
        catch
        {
            // Leave nothing half-open: the next call starts over.
            foreach (var log in _logs.Values)
            {
                log.Dispose();
            }

            _logs.Clear();
            _byId.Clear();
            _feedback?.Dispose();
            _feedback = null;
            _lock.Dispose();
            _lock = null;
            throw;
        }
    }

    private void Load(string logsDirectory)
    {
        foreach (var directory in Directory.EnumerateDirectories(logsDirectory).Order(StringComparer.Ordinal))
        {
            var namePath = Path.Combine(directory, "name");
            if (!File.Exists(namePath))
            {
                _logger.LogWarning("Ignoring '{Directory}': it has no name file.", directory);
                continue;
            }

            var log = AdapterLog.Load(File.ReadAllText(namePath, Encoding.UTF8), directory, _logger);
            _logs[log.Name] = log;
            for (var i = log.Start; i < log.Entries.Count; i++)
            {
                _byId[log.Entries[i].Id] = log.Entries[i];
            }
        }

        _feedback = FeedbackLog.Open(Path.Combine(_root, "feedback.jsonl"), _logger);

        // Apply the retention rules at once, so that nothing past them is served after a restart.
        var cutoff = Cutoff(_time.GetUtcNow());
        foreach (var log in _logs.Values)
        {
            RemoveTrimmed(log, log.Trim(_options.MaxEntriesPerStream, cutoff, persist: true));
        }

        _feedback.Delete(_feedback.Ids().Where(id => !_byId.ContainsKey(id)).ToList());
        _logger.LogInformation("Opened the traffic store in {Root}: {Entries} entries in {Logs} logs.", _root, _byId.Count, _logs.Count);
    }

    private AdapterLog GetOrCreateLog(string name)
    {
        if (_logs.TryGetValue(name, out var log))
        {
            return log;
        }

        var directory = Path.Combine(_root, "logs", DirectoryNameFor(name));
        for (var suffix = 2; Directory.Exists(directory); suffix++)
        {
            // Another name mapped to the same directory (practically impossible with the hash); keep both.
            directory = Path.Combine(_root, "logs", $"{DirectoryNameFor(name)}-{suffix}");
        }

        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "name"), name, new UTF8Encoding(false));
        log = new AdapterLog(name, directory, _logger);
        _logs[name] = log;
        return log;
    }

    private static string DirectoryNameFor(string name)
    {
        var readable = new StringBuilder();
        foreach (var c in name.AsSpan(0, Math.Min(name.Length, 64)))
        {
            readable.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_');
        }

        var hash = 14695981039346656037UL;
        foreach (var c in name)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        return string.Create(CultureInfo.InvariantCulture, $"{readable}-{hash:x16}");
    }

    /// <summary>Where an entry lives: its log, position and byte range in a segment.</summary>
    private sealed record IndexedEntry(string Id, AdapterLog Log, LogPosition Position, int Segment, long Offset, int Length);

    /// <summary>One adapter's log: its segments, the in-memory index and the trim state.</summary>
    private sealed class AdapterLog : IDisposable
    {
        private readonly ILogger _logger;
        private readonly SortedDictionary<int, LogPosition?> _segments = [];
        private FileStream? _data;
        private FileStream? _index;
        private int _activeSegment = -1;
        private int _nextSegment = 1;

        public AdapterLog(string name, string directory, ILogger logger)
        {
            Name = name;
            Directory = directory;
            _logger = logger;
        }

        public string Name { get; }

        public string Directory { get; }

        /// <summary>Indexed entries in position order; those before <see cref="Start"/> are trimmed.</summary>
        public List<IndexedEntry> Entries { get; } = [];

        public int Start { get; private set; }

        public int Count => Entries.Count - Start;

        /// <summary>Entries below this position are trimmed.</summary>
        public LogPosition Head { get; private set; }

        /// <summary>The last position assigned.</summary>
        public LogPosition? Tail { get; private set; }

        public static AdapterLog Load(string name, string directory, ILogger logger)
        {
            var log = new AdapterLog(name, directory, logger);
            var statePath = Path.Combine(directory, "state");
            if (File.Exists(statePath))
            {
                var parts = File.ReadAllText(statePath).Trim().Split('\t');
                if (parts.Length == 2 && LogPosition.TryParse(parts[0], out var head) && LogPosition.TryParse(parts[1], out var tail))
                {
                    log.Head = head;
                    log.Tail = tail;
                }
            }

            var numbers = System.IO.Directory.EnumerateFiles(directory, "*.jsonl")
                .Select(path => int.TryParse(Path.GetFileNameWithoutExtension(path), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1)
                .Where(n => n >= 0)
                .Order();
            foreach (var number in numbers)
            {
                var records = SegmentIndex.Load(log.DataPath(number), log.IndexPath(number), logger);
                log._nextSegment = number + 1;
                if (records.Count == 0)
                {
                    File.Delete(log.DataPath(number));
                    File.Delete(log.IndexPath(number));
                    continue;
                }

                foreach (var (position, offset, length, id) in records)
                {
                    if (position >= log.Head)
                    {
                        log.Entries.Add(new IndexedEntry(id, log, position, number, offset, length));
                    }
                }

                log._segments[number] = records[^1].Position;
                if (log.Tail is null || records[^1].Position > log.Tail)
                {
                    log.Tail = records[^1].Position;
                }
            }

            return log;
        }

        /// <summary>Appends entries (already de-duplicated) and indexes them; all or nothing.</summary>
        public int Append(List<TrafficEntry> entries, long segmentMaxBytes, Dictionary<string, IndexedEntry> byId)
        {
            var tail = Tail;
            var pending = new List<IndexedEntry>(entries.Count);
            var data = new List<byte[]>(entries.Count);
            foreach (var entry in entries)
            {
                var position = LogPosition.Next(tail, LogPosition.MillisecondsOf(entry.Timestamp));
                tail = position;
                data.Add(JsonSerializer.SerializeToUtf8Bytes(new SegmentLine(position.ToString(), entry), StorageJsonContext.Default.SegmentLine));
                pending.Add(new IndexedEntry(entry.Id, this, position, 0, 0, 0));
            }

            var rollbacks = new List<(FileStream Data, long DataLength, FileStream Index, long IndexLength)>();
            try
            {
                for (var i = 0; i < pending.Count; i++)
                {
                    if (_data is null || (_data.Length > 0 && _data.Length + data[i].Length + 1 > segmentMaxBytes))
                    {
                        Flush();
                        OpenNewSegment();
                    }

                    if (rollbacks.Count == 0 || !ReferenceEquals(rollbacks[^1].Data, _data))
                    {
                        rollbacks.Add((_data!, _data!.Length, _index!, _index!.Length));
                    }

                    var offset = _data!.Length;
                    _data.Write(data[i]);
                    _data.Write(NewLine);
                    var line = string.Create(CultureInfo.InvariantCulture, $"{pending[i].Position}\t{offset}\t{data[i].Length}\t{pending[i].Id}\n");
                    _index!.Write(Encoding.UTF8.GetBytes(line));
                    pending[i] = pending[i] with { Segment = _activeSegment, Offset = offset, Length = data[i].Length };
                    _segments[_activeSegment] = pending[i].Position;
                }

                Flush();
            }
            catch
            {
                // Undo the partial batch so that the files and the index stay consistent.
                foreach (var (dataStream, dataLength, indexStream, indexLength) in rollbacks)
                {
                    try
                    {
                        dataStream.SetLength(dataLength);
                        indexStream.SetLength(indexLength);
                    }
                    catch (IOException)
                    {
                        // The next load repairs what could not be undone here.
                    }
                }

                throw;
            }

            Tail = tail;
            foreach (var entry in pending)
            {
                Entries.Add(entry);
                byId[entry.Id] = entry;
            }

            return pending.Count;
        }

        /// <summary>Moves the low-water mark to honour the count and age limits; returns the entries it passed.</summary>
        public List<IndexedEntry> Trim(long? maxEntries, LogPosition? cutoff, bool persist)
        {
            var head = Head;
            if (maxEntries is { } max && Count > max)
            {
                var firstKept = Entries[Entries.Count - (int)max].Position;
                head = firstKept > head ? firstKept : head;
            }

            if (cutoff is { } c && c > head)
            {
                head = c;
            }

            var removed = new List<IndexedEntry>();
            while (Start < Entries.Count && Entries[Start].Position < head)
            {
                removed.Add(Entries[Start]);
                Start++;
            }

            var moved = head != Head;
            Head = head;
            if (Start > 1024 && Start > Count)
            {
                Entries.RemoveRange(0, Start);
                Start = 0;
            }

            var deleted = DeleteTrimmedSegments();
            if ((persist && moved) || deleted)
            {
                SaveState();
            }

            return removed;
        }

        public int IndexAtOrAfter(LogPosition position) => LowerBound(position, inclusive: true);

        public int IndexAfter(LogPosition position) => LowerBound(position, inclusive: false);

        /// <summary>Reads entries from their segments.</summary>
        public TrafficEntry[] Read(IReadOnlyList<IndexedEntry> entries)
        {
            var result = new TrafficEntry[entries.Count];
            foreach (var group in entries.Select((entry, i) => (entry, i)).GroupBy(pair => pair.entry.Segment))
            {
                using var handle = File.OpenHandle(DataPath(group.Key), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                foreach (var (entry, i) in group)
                {
                    var buffer = new byte[entry.Length];
                    var read = 0;
                    while (read < buffer.Length)
                    {
                        var n = RandomAccess.Read(handle, buffer.AsSpan(read), entry.Offset + read);
                        if (n == 0)
                        {
                            throw new InvalidDataException($"Segment {DataPath(group.Key)} ends before entry {entry.Id}.");
                        }

                        read += n;
                    }

                    result[i] = JsonSerializer.Deserialize(buffer, StorageJsonContext.Default.SegmentLine)!.Entry;
                }
            }

            return result;
        }

        public void SaveState()
        {
            var path = Path.Combine(Directory, "state");
            var temporary = path + ".tmp";
            File.WriteAllText(temporary, $"{Head}\t{Tail ?? LogPosition.Zero}\n");
            File.Move(temporary, path, overwrite: true);
        }

        public void Dispose()
        {
            _data?.Dispose();
            _index?.Dispose();
            _data = null;
            _index = null;
        }

        private string DataPath(int number) => Path.Combine(Directory, string.Create(CultureInfo.InvariantCulture, $"{number:D10}.jsonl"));

        private string IndexPath(int number) => Path.Combine(Directory, string.Create(CultureInfo.InvariantCulture, $"{number:D10}.idx"));

        private int LowerBound(LogPosition position, bool inclusive)
        {
            int low = Start, high = Entries.Count;
            while (low < high)
            {
                var mid = low + ((high - low) / 2);
                var comparison = Entries[mid].Position.CompareTo(position);
                if (comparison < 0 || (!inclusive && comparison == 0))
                {
                    low = mid + 1;
                }
                else
                {
                    high = mid;
                }
            }

            return low;
        }

        private void OpenNewSegment()
        {
            Dispose();
            _activeSegment = _nextSegment++;
            _data = new FileStream(DataPath(_activeSegment), FileMode.Append, FileAccess.Write, FileShare.Read | FileShare.Delete);
            _index = new FileStream(IndexPath(_activeSegment), FileMode.Append, FileAccess.Write, FileShare.Read | FileShare.Delete);
            _segments[_activeSegment] = null;
        }

        private void Flush()
        {
            _data?.Flush(flushToDisk: true);
            _index?.Flush(flushToDisk: true);
        }

        private bool DeleteTrimmedSegments()
        {
            var deletable = _segments
                .Where(segment => segment.Value is { } last && last < Head)
                .Select(segment => segment.Key)
                .ToList();
            foreach (var number in deletable)
            {
                if (number == _activeSegment)
                {
                    Dispose();
                }

                File.Delete(DataPath(number));
                File.Delete(IndexPath(number));
                _segments.Remove(number);
                _logger.LogDebug("Deleted trimmed segment {Segment} of {Adapter}.", number, Name);
            }

            return deletable.Count > 0;
        }
    }
}
