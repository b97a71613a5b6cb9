using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using TuneGateway.Storage.Serialization;

namespace TuneGateway.Storage;

/// <summary>
/// Loads a segment's index (<c>position, offset, length, id</c> per line), checking it against the segment
/// and rebuilding what is missing: after a crash the index may lag the data, and the data may end in a
/// torn line, which is cut off.
/// </summary>
internal static class SegmentIndex
{
    public static List<(LogPosition Position, long Offset, int Length, string Id)> Load(string dataPath, string indexPath, ILogger logger)
    {
        var dataLength = new FileInfo(dataPath).Length;
        var records = new List<(LogPosition Position, long Offset, int Length, string Id)>();
        long validEnd = 0;
        var rewrite = false;
        if (File.Exists(indexPath))
        {
            var bytes = File.ReadAllBytes(indexPath);
            var start = 0;
            for (var newline = Array.IndexOf(bytes, (byte)'\n'); newline >= 0; newline = Array.IndexOf(bytes, (byte)'\n', start))
            {
                var parts = Encoding.UTF8.GetString(bytes, start, newline - start).Split('\t', 4);
                start = newline + 1;
                if (parts.Length == 4
                    && LogPosition.TryParse(parts[0], out var position)
                    && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var offset)
                    && int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var length)
                    && offset >= validEnd
                    && offset + length + 1 <= dataLength)
                {
                    records.Add((position, offset, length, parts[3]));
                    validEnd = offset + length + 1;
                }
                else
                {
                    rewrite = true;
                    break;
                }
            }

            rewrite |= start < bytes.Length;
        }
        else
        {
            rewrite = dataLength > 0;
        }

        if (validEnd < dataLength)
        {
            rewrite = true;
            validEnd = Rescan(dataPath, validEnd, dataLength, records, logger);
        }

        if (rewrite)
        {
            var builder = new StringBuilder();
            foreach (var (position, offset, length, id) in records)
            {
                builder.Append(CultureInfo.InvariantCulture, $"{position}\t{offset}\t{length}\t{id}\n");
            }

            var temporary = indexPath + ".tmp";
            File.WriteAllText(temporary, builder.ToString(), new UTF8Encoding(false));
            File.Move(temporary, indexPath, overwrite: true);
            logger.LogInformation("Rebuilt the index of {Segment} ({Count} entries).", dataPath, records.Count);
        }

        return records;
    }

    private static long Rescan(string dataPath, long from, long dataLength, List<(LogPosition, long, int, string)> records, ILogger logger)
    {
        var remaining = new byte[dataLength - from];
        using (var handle = File.OpenHandle(dataPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            var read = 0;
            while (read < remaining.Length)
            {
                var n = RandomAccess.Read(handle, remaining.AsSpan(read), from + read);
                if (n == 0)
                {
                    break;
                }

                read += n;
            }
        }

        var position = 0;
        for (var newline = Array.IndexOf(remaining, (byte)'\n'); newline >= 0; newline = Array.IndexOf(remaining, (byte)'\n', position))
        {
            try
            {
                var line = JsonSerializer.Deserialize(remaining.AsSpan(position, newline - position), StorageJsonContext.Default.SegmentLine);
                if (line is not null && LogPosition.TryParse(line.Position, out var logPosition))
                {
                    records.Add((logPosition, from + position, newline - position, line.Entry.Id));
                }
            }
            catch (JsonException ex)
            {
                logger.LogWarning(ex, "Skipping an unreadable line at offset {Offset} of {Segment}.", from + position, dataPath);
            }

            position = newline + 1;
        }

        if (position < remaining.Length)
        {
            // A write that was cut short by a crash: drop the partial line.
            logger.LogWarning("Cutting a torn line of {Bytes} bytes off the end of {Segment}.", remaining.Length - position, dataPath);
            using var stream = new FileStream(dataPath, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            stream.SetLength(from + position);
            stream.Flush(flushToDisk: true);
        }

        return from + position;
    }
}
