using System.Text.Json.Serialization;

namespace TuneGateway.Storage.Serialization;

/// <summary>A line of an embedded-store segment file: an entry and its log position.</summary>
internal sealed record SegmentLine(string Position, TrafficEntry Entry);

/// <summary>A line of the embedded feedback log: an upsert (with <see cref="Feedback"/>) or a deletion (with <see cref="Deleted"/>).</summary>
internal sealed record FeedbackLine(long Seq, Feedback? Feedback, string? Deleted);

/// <summary>Source-generated JSON contracts for everything the storage layer writes to disk or Redis.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(TrafficEntry))]
[JsonSerializable(typeof(Feedback))]
[JsonSerializable(typeof(SegmentLine))]
[JsonSerializable(typeof(FeedbackLine))]
internal sealed partial class StorageJsonContext : JsonSerializerContext;
