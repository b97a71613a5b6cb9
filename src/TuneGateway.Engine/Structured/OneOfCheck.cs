using System.Text.Json;

namespace TuneGateway.Engine.Structured;

/// <summary>
/// The decoder produces a value matching at least one alternative of a <c>oneOf</c> (it decodes
/// it as <c>anyOf</c>); JSON Schema wants exactly one. That is the same thing only when no value can
/// match two alternatives, so a <c>oneOf</c> is accepted when its alternatives are provably
/// disjoint and refused otherwise (use <c>anyOf</c>), keeping the guarantee that a finished output
/// validates. Provably disjoint, pairwise: different JSON types; literal sets (<c>const</c>,
/// <c>enum</c>) with no common value; or objects with a property both require whose
/// <c>const</c>/<c>enum</c> values differ (the discriminator clients use).
/// </summary>
internal static class OneOfCheck
{
    // integer and number overlap: both are JSON numbers.
    private static readonly string[] s_allKinds = ["string", "number", "boolean", "null", "object", "array"];
    private const int MaxRefDepth = 16;

    public static void EnsureDisjoint(JsonElement alternatives, JsonElement root, string path)
    {
        var items = alternatives.EnumerateArray().Select(a => Follow(a, root)).ToArray();
        for (int i = 0; i < items.Length; i++)
        for (int j = i + 1; j < items.Length; j++)
        {
            if (!Disjoint(items[i], items[j], root))
                throw new SchemaNotSupportedException("oneOf",
                    $"'oneOf' (at '{path}'): alternatives {i} and {j} can match the same value, and constrained decoding cannot rule out matching both. " +
                    "Give them different types or a required property with different 'const' values, or use 'anyOf'.");
        }
    }

    private static bool Disjoint(JsonElement a, JsonElement b, JsonElement root)
    {
        if (Literals(a) is { } la && Literals(b) is { } lb) return !la.Overlaps(lb);
        var common = Kinds(a).Intersect(Kinds(b)).ToArray();
        if (common.Length == 0) return true;
        // Only objects in common: a shared required property with disjoint literal values tells them apart.
        return common is ["object"] && HaveDiscriminator(a, b, root);
    }

    private static bool HaveDiscriminator(JsonElement a, JsonElement b, JsonElement root)
    {
        foreach (string name in Required(a).Intersect(Required(b)))
        {
            if (Property(a, name, root) is { } pa && Property(b, name, root) is { } pb && Literals(pa) is { } la && Literals(pb) is { } lb && !la.Overlaps(lb))
                return true;
        }
        return false;
    }

    private static IEnumerable<string> Required(JsonElement schema) =>
        schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.Array
            ? r.EnumerateArray().Where(n => n.ValueKind == JsonValueKind.String).Select(n => n.GetString()!)
            : [];

    private static JsonElement? Property(JsonElement schema, string name, JsonElement root) =>
        schema.TryGetProperty("properties", out var properties) && properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(name, out var p)
            ? Follow(p, root)
            : null;

    /// <summary>The compact texts of a schema's literal values, or null when it is not a const/enum schema.</summary>
    private static HashSet<string>? Literals(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object) return null;
        if (schema.TryGetProperty("const", out var constant)) return [JsonText.Compact(constant)];
        if (schema.TryGetProperty("enum", out var list) && list.ValueKind == JsonValueKind.Array) return [.. list.EnumerateArray().Select(JsonText.Compact)];
        return null;
    }

    /// <summary>The JSON types a schema's values can have (all of them when it does not say).</summary>
    private static IEnumerable<string> Kinds(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object) return s_allKinds;
        if (Literals(schema) is { } literals)
            return literals.Select(l => JsonDocument.Parse(l).RootElement.ValueKind switch
            {
                JsonValueKind.String => "string", JsonValueKind.Number => "number", JsonValueKind.Object => "object",
                JsonValueKind.Array => "array", JsonValueKind.Null => "null", _ => "boolean",
            }).Distinct();
        if (schema.TryGetProperty("type", out var type))
        {
            var names = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString() ?? "") : [type.GetString() ?? ""];
            return names.Select(n => n == "integer" ? "number" : n).Distinct();
        }
        if (schema.TryGetProperty("properties", out _) || schema.TryGetProperty("required", out _) || schema.TryGetProperty("additionalProperties", out _)) return ["object"];
        if (schema.TryGetProperty("items", out _) || schema.TryGetProperty("minItems", out _) || schema.TryGetProperty("maxItems", out _)) return ["array"];
        if (schema.TryGetProperty("minLength", out _) || schema.TryGetProperty("maxLength", out _)) return ["string"];
        return s_allKinds;
    }

    /// <summary>A schema with its <c>$ref</c>s followed (a pointer it cannot follow leaves the schema as it is: all kinds, no literals).</summary>
    private static JsonElement Follow(JsonElement schema, JsonElement root)
    {
        for (int depth = 0; depth < MaxRefDepth && schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("$ref", out var reference); depth++)
        {
            string pointer = reference.GetString() ?? "";
            if (pointer != "#" && !pointer.StartsWith("#/", StringComparison.Ordinal)) return schema;
            if (SchemaPointer.Find(root, pointer) is not { } target) return schema;
            schema = target;
        }
        return schema;
    }
}
