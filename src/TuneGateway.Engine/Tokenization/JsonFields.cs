using System.Text.Json;

namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// Typed access to the fields of one JSON configuration file, turning every problem into a
/// <see cref="TokenizerLoadException"/> that names the file and the field path.
/// </summary>
internal sealed class JsonFields(string filePath)
{
    public string FilePath { get; } = filePath;

    public static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

    public TokenizerLoadException Error(string? field, string problem, Exception? inner = null) =>
        new(FilePath, field, problem, inner);

    /// <summary>The field's value, or <see langword="null"/> when it is absent or JSON null.</summary>
    public static JsonElement? Get(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out JsonElement value)
            && value.ValueKind != JsonValueKind.Null
            ? value
            : null;

    public JsonElement RequireObject(JsonElement obj, string name, string path) =>
        Get(obj, name) is { ValueKind: JsonValueKind.Object } value
            ? value
            : throw Error(Join(path, name), Get(obj, name) is null ? "is missing" : "must be a JSON object");

    public JsonElement RequireArray(JsonElement obj, string name, string path) =>
        Get(obj, name) is { ValueKind: JsonValueKind.Array } value
            ? value
            : throw Error(Join(path, name), Get(obj, name) is null ? "is missing" : "must be a JSON array");

    public string? OptionalString(JsonElement obj, string name, string path) =>
        Get(obj, name) switch
        {
            null => null,
            { ValueKind: JsonValueKind.String } value => value.GetString(),
            _ => throw Error(Join(path, name), "must be a string"),
        };

    public string RequireString(JsonElement obj, string name, string path) =>
        OptionalString(obj, name, path) ?? throw Error(Join(path, name), "is missing");

    public bool OptionalBool(JsonElement obj, string name, string path, bool defaultValue) =>
        Get(obj, name) switch
        {
            null => defaultValue,
            { ValueKind: JsonValueKind.True } => true,
            { ValueKind: JsonValueKind.False } => false,
            _ => throw Error(Join(path, name), "must be true or false"),
        };

    public int RequireInt(JsonElement obj, string name, string path) =>
        Get(obj, name) is { ValueKind: JsonValueKind.Number } value && value.TryGetInt32(out int result)
            ? result
            : throw Error(Join(path, name), Get(obj, name) is null ? "is missing" : "must be a 32-bit integer");

    public int OptionalInt(JsonElement obj, string name, string path, int defaultValue) =>
        Get(obj, name) is null ? defaultValue : RequireInt(obj, name, path);

    /// <summary>The component's <c>type</c> discriminator.</summary>
    public string RequireType(JsonElement component, string path) =>
        component.ValueKind == JsonValueKind.Object
            ? RequireString(component, "type", path)
            : throw Error(path, "must be a JSON object with a 'type'");

    /// <summary>
    /// Reads a HF "pattern" object: <c>{"String": "..."}</c> (a literal) or <c>{"Regex": "..."}</c>.
    /// </summary>
    public (string Value, bool IsRegex) RequirePattern(JsonElement obj, string name, string path)
    {
        string field = Join(path, name);
        JsonElement pattern = RequireObject(obj, name, path);
        if (OptionalString(pattern, "String", field) is { } literal)
        {
            return (literal, false);
        }

        if (OptionalString(pattern, "Regex", field) is { } regex)
        {
            return (regex, true);
        }

        throw Error(field, "must be {\"String\": ...} or {\"Regex\": ...}");
    }
}
