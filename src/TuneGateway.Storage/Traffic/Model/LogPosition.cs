using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Storage;

/// <summary>
/// Where an entry sits in its adapter's log: a millisecond timestamp and a sequence number within that
/// millisecond, written <c>ms-seq</c> exactly like a Redis stream entry id.
/// </summary>
/// <remarks>
/// Both stores assign positions the same way: the millisecond is the entry's <see cref="TrafficEntry.Timestamp"/>,
/// unless the log already holds a later position, in which case the entry goes right after it. Positions
/// therefore only grow, follow request time for entries written promptly, and are never earlier than the
/// request time of the entry (an entry replayed after an outage sits at the time it reached the log).
/// </remarks>
/// <param name="Milliseconds">Unix time in milliseconds.</param>
/// <param name="Sequence">Order among entries in the same millisecond.</param>
[JsonConverter(typeof(LogPositionJsonConverter))]
public readonly record struct LogPosition(long Milliseconds, long Sequence) : IComparable<LogPosition>
{
    /// <summary>The smallest position.</summary>
    public static LogPosition Zero => default;

    /// <summary>The first position in the given millisecond.</summary>
    public static LogPosition AtTime(DateTimeOffset time) => new(time.ToUnixTimeMilliseconds(), 0);

    /// <summary>The wall-clock time of the position.</summary>
    public DateTimeOffset Time => DateTimeOffset.FromUnixTimeMilliseconds(Milliseconds);

    /// <summary>The millisecond a request time maps to (Unix milliseconds, at least 1 since <c>0-0</c> is not a valid position).</summary>
    public static long MillisecondsOf(DateTimeOffset time) => Math.Max(1, time.ToUnixTimeMilliseconds());

    /// <summary>The position a new entry with request time <paramref name="milliseconds"/> takes after <paramref name="tail"/>.</summary>
    public static LogPosition Next(LogPosition? tail, long milliseconds) =>
        tail is { } last && milliseconds <= last.Milliseconds
            ? new LogPosition(last.Milliseconds, last.Sequence + 1)
            : new LogPosition(milliseconds, 0);

    /// <inheritdoc />
    public int CompareTo(LogPosition other)
    {
        var byTime = Milliseconds.CompareTo(other.Milliseconds);
        return byTime != 0 ? byTime : Sequence.CompareTo(other.Sequence);
    }

    /// <summary>Compares positions.</summary>
    public static bool operator <(LogPosition left, LogPosition right) => left.CompareTo(right) < 0;

    /// <summary>Compares positions.</summary>
    public static bool operator >(LogPosition left, LogPosition right) => left.CompareTo(right) > 0;

    /// <summary>Compares positions.</summary>
    public static bool operator <=(LogPosition left, LogPosition right) => left.CompareTo(right) <= 0;

    /// <summary>Compares positions.</summary>
    public static bool operator >=(LogPosition left, LogPosition right) => left.CompareTo(right) >= 0;

    /// <summary>The <c>ms-seq</c> form.</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Milliseconds}-{Sequence}");

    /// <summary>Parses the <c>ms-seq</c> form.</summary>
    /// <exception cref="FormatException">The text is not a position.</exception>
    public static LogPosition Parse(string text) =>
        TryParse(text, out var position) ? position : throw new FormatException($"'{text}' is not a log position (ms-seq).");

    /// <summary>Parses the <c>ms-seq</c> form.</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, out LogPosition position)
    {
        position = default;
        if (text is null)
        {
            return false;
        }

        var span = text.AsSpan();
        var dash = span.IndexOf('-');
        if (dash <= 0
            || !long.TryParse(span[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            || !long.TryParse(span[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var seq))
        {
            return false;
        }

        position = new LogPosition(ms, seq);
        return true;
    }
}

/// <summary>Writes a <see cref="LogPosition"/> as its <c>ms-seq</c> string (which is also the paging cursor).</summary>
public sealed class LogPositionJsonConverter : JsonConverter<LogPosition>
{
    /// <inheritdoc />
    public override LogPosition Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        LogPosition.TryParse(reader.GetString(), out var position) ? position : throw new JsonException("Expected a log position (ms-seq).");

    /// <inheritdoc />
    public override void Write(Utf8JsonWriter writer, LogPosition value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString());
}
