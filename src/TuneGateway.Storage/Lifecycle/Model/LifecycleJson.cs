using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Storage.Lifecycle;

/// <summary>How lifecycle records are written, in Redis values and in the embedded store's files.</summary>
public static class LifecycleJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>
    /// Pipeline definitions, the pipeline state the controller keeps (its drift history) and the
    /// operator API's bodies over them: snake_case keys, enum names, indented, unknown members refused.
    /// One object for the controller, which writes them, and the gateway, which serves them.
    /// </summary>
    public static readonly JsonSerializerOptions Pipelines = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <summary>The pipeline state key (<see cref="IPipelineReader.GetStateAsync"/>) under which the controller keeps an adapter's drift checks, oldest first.</summary>
    public const string DriftHistoryKey = "drift_history";

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>An enum value's wire and stored name ("rolled_back", "succeeded").</summary>
    public static string Name<T>(T value) where T : struct, Enum => JsonNamingPolicy.SnakeCaseLower.ConvertName(value.ToString());

    public static T Deserialize<T>(string json) => JsonSerializer.Deserialize<T>(json, Options)
        ?? throw new InvalidDataException($"Empty {typeof(T).Name} record.");
}

/// <summary>Checks shared by both store implementations.</summary>
public static class LifecycleRules
{
    public static void ValidateArms(string alias, IReadOnlyList<AliasArm> arms)
    {
        if (string.IsNullOrWhiteSpace(alias) || alias.Contains('@') || alias.Contains('/'))
            throw new ArgumentException($"'{alias}' is not a valid alias name (no '@' or '/').", nameof(alias));
        if (arms.Count == 0) throw new ArgumentException("An alias needs at least one arm.", nameof(arms));
        if (arms.Any(a => string.IsNullOrWhiteSpace(a.Model) || !double.IsFinite(a.Weight) || a.Weight < 0))
            throw new ArgumentException("Every arm needs a model and a non-negative weight.", nameof(arms));
        if (Math.Abs(arms.Sum(a => a.Weight) - 1) > 1e-6)
            throw new ArgumentException($"The weights of alias '{alias}' must sum to 1 (they sum to {arms.Sum(a => a.Weight)}).", nameof(arms));
        if (arms.Select(a => a.Model).Distinct(StringComparer.Ordinal).Count() != arms.Count)
            throw new ArgumentException($"Alias '{alias}' names a model twice.", nameof(arms));
    }

    /// <summary>Arms with relative weights (90 and 10), scaled to sum to 1 as stored.</summary>
    public static IReadOnlyList<AliasArm> Normalised(IReadOnlyList<AliasArm> arms)
    {
        double total = arms.Sum(a => a.Weight);
        return [.. arms.Select(a => a with { Weight = a.Weight / total })];
    }

    public static void ValidateName(string value, string what)
    {
        if (string.IsNullOrWhiteSpace(value) || value.Length > 200 || value.Contains('/') || value.Contains('\\') || value.Contains("..") || value.Any(char.IsControl))
            throw new ArgumentException($"'{value}' is not a valid {what}.", what);
    }

    /// <summary>The number of a version name ("v12" → 12) for ordering; names of another form sort last.</summary>
    public static long VersionNumber(string version) => version.Length > 1 && version[0] == 'v' && long.TryParse(version.AsSpan(1), out long n) ? n : long.MaxValue;

    public static string DescribeStates(IReadOnlyCollection<VersionState>? states) =>
        states is null ? "any" : string.Join(" or ", states.Select(s => JsonNamingPolicy.SnakeCaseLower.ConvertName(s.ToString())));
}
