using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Storage.Lifecycle;

/// <summary>What started a pipeline run (or a monitor's step).</summary>
public enum TriggerKind
{
    /// <summary>The pipeline's cron schedule.</summary>
    Schedule,
    /// <summary>An operator or the CLI asked for a run now.</summary>
    Manual,
    /// <summary>The drift monitor raised an alarm.</summary>
    Drift,
    /// <summary>Enough new feedback arrived.</summary>
    Feedback,
    /// <summary>A scheduled firing was missed (controller down) and is made up once.</summary>
    Misfire,
    /// <summary>The canary monitor's periodic check.</summary>
    CanaryCheck,
    /// <summary>A trigger text this version does not recognise (written by a newer one); kept verbatim.</summary>
    Other,
}

/// <summary>
/// A run's trigger: its kind, which the controller decides on (a manual run goes ahead while the
/// pipeline is paused), and the detail people read. Stored and sent as the one string earlier
/// versions wrote ("manual by alice", "feedback: 150 new items"), so job histories already in the
/// stores still read, and <see cref="Parse"/> recovers the kind from it.
/// </summary>
[JsonConverter(typeof(RunTriggerJsonConverter))]
public readonly record struct RunTrigger(TriggerKind Kind, string? Detail = null)
{
    private const string MisfireSuffix = " (misfire: fire once now)";

    // Kind → the text before the detail; CanaryCheck and a bare schedule have no detail.
    private static readonly (TriggerKind Kind, string Prefix)[] Prefixes =
    [
        (TriggerKind.Manual, "manual by "), (TriggerKind.Drift, "drift: "), (TriggerKind.Feedback, "feedback: "),
        (TriggerKind.Misfire, "missed firing of "), (TriggerKind.Schedule, "schedule ("),
    ];

    public static RunTrigger Schedule(string? detail = null) => new(TriggerKind.Schedule, detail);
    public static RunTrigger Manual(string actor) => new(TriggerKind.Manual, actor);
    public static RunTrigger Drift(IEnumerable<string> alarms) => new(TriggerKind.Drift, string.Join("; ", alarms));
    public static RunTrigger Feedback(long newItems) => new(TriggerKind.Feedback, $"{newItems.ToString(CultureInfo.InvariantCulture)} new items");
    public static RunTrigger Misfire(DateTimeOffset due) => new(TriggerKind.Misfire, due.ToString("u", CultureInfo.InvariantCulture));
    public static RunTrigger CanaryCheck { get; } = new(TriggerKind.CanaryCheck);

    public override string ToString() => Kind switch
    {
        TriggerKind.Schedule => Detail is null ? "schedule" : $"schedule ({Detail})",
        TriggerKind.Manual => $"manual by {Detail}",
        TriggerKind.Drift => $"drift: {Detail}",
        TriggerKind.Feedback => $"feedback: {Detail}",
        TriggerKind.Misfire => $"missed firing of {Detail}{MisfireSuffix}",
        TriggerKind.CanaryCheck => "canary check",
        _ => Detail ?? "",
    };

    /// <summary>The trigger a stored or wire string names; unknown texts are <see cref="TriggerKind.Other"/>.</summary>
    public static RunTrigger Parse(string text)
    {
        if (text == "schedule") return Schedule();
        if (text == "canary check") return CanaryCheck;
        // Before versions that named the actor, a manual run was just "manual".
        if (text == "manual") return new RunTrigger(TriggerKind.Manual);
        foreach (var (kind, prefix) in Prefixes)
        {
            if (!text.StartsWith(prefix, StringComparison.Ordinal)) continue;
            string detail = text[prefix.Length..];
            if (kind == TriggerKind.Schedule && detail.EndsWith(')')) return Schedule(detail[..^1]);
            if (kind == TriggerKind.Misfire && detail.EndsWith(MisfireSuffix, StringComparison.Ordinal)) return new RunTrigger(kind, detail[..^MisfireSuffix.Length]);
            if (kind is not TriggerKind.Schedule and not TriggerKind.Misfire) return new RunTrigger(kind, detail);
        }
        return new RunTrigger(TriggerKind.Other, text);
    }
}

/// <summary>Reads and writes a <see cref="RunTrigger"/> as its one-string form.</summary>
public sealed class RunTriggerJsonConverter : JsonConverter<RunTrigger>
{
    public override RunTrigger Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        RunTrigger.Parse(reader.GetString() ?? throw new JsonException("A trigger is a string."));

    public override void Write(Utf8JsonWriter writer, RunTrigger value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
