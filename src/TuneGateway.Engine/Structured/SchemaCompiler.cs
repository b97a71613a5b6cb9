using System.Text.Encodings.Web;
using System.Text.Json;

namespace TuneGateway.Engine.Structured;

/// <summary>A schema uses a keyword (or a form of one) the constrained decoder cannot enforce.</summary>
public sealed class SchemaNotSupportedException(string keyword, string message) : Exception(message)
{
    /// <summary>The keyword at fault, e.g. <c>pattern</c>.</summary>
    public string Keyword { get; } = keyword;
}

/// <summary>JSON pointers into the same schema document (<c>#</c>, <c>#/$defs/x</c>, <c>#/anyOf/0</c>).</summary>
internal static class SchemaPointer
{
    /// <summary>The element <paramref name="pointer"/> names in <paramref name="root"/>, or null when it names none.</summary>
    public static JsonElement? Find(JsonElement root, string pointer)
    {
        var target = root;
        foreach (string raw in pointer.Length <= 2 ? [] : pointer[2..].Split('/'))
        {
            string part = Uri.UnescapeDataString(raw).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (target.ValueKind == JsonValueKind.Object && target.TryGetProperty(part, out var child)) target = child;
            else if (target.ValueKind == JsonValueKind.Array && int.TryParse(part, out int index) && index >= 0 && index < target.GetArrayLength()) target = target[index];
            else return null;
        }
        return target;
    }
}

/// <summary>Compact JSON text of values, as literals in grammars.</summary>
internal static class JsonText
{
    private static readonly JsonSerializerOptions s_compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Quote(string text) => JsonSerializer.Serialize(text, s_compact);

    public static string Compact(JsonElement value) => JsonSerializer.Serialize(value, s_compact);
}

/// <summary>
/// Compiles a JSON Schema into grammar nodes. Enforced: type (one or a list), properties,
/// required, additionalProperties (false, true, a schema), items, minItems, maxItems, minLength,
/// maxLength, enum, const, anyOf, oneOf (as anyOf, when its alternatives are disjoint: <see cref="OneOfCheck"/>), allOf with one member, $ref into the same
/// document (#, #/$defs/..., #/definitions/..., any JSON pointer) with recursion; annotations are
/// ignored. Anything else is refused by name, never silently dropped: an output that ignored it
/// might not validate.
/// </summary>
internal sealed class SchemaCompiler
{
    private static readonly HashSet<string> s_annotations = new(StringComparer.Ordinal)
    {
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions",
    };

    private static readonly HashSet<string> s_assertions = new(StringComparer.Ordinal)
    {
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength",
        "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    };

    private static readonly string[] s_types = ["string", "number", "integer", "boolean", "null", "object", "array"];

    private readonly JsonElement _root;
    private readonly StructuredOutputOptions _options;
    private readonly AnyValues _any;
    private readonly Dictionary<string, GrammarNode> _byPointer = new(StringComparer.Ordinal);
    private readonly List<RefNode> _refs = [];

    private SchemaCompiler(JsonElement root, StructuredOutputOptions options, AnyValues any)
    {
        _root = root;
        _options = options;
        _any = any;
    }

    /// <summary>The node for a whole schema document; throws <see cref="SchemaNotSupportedException"/>.</summary>
    public static GrammarNode Compile(JsonElement schema, StructuredOutputOptions options, AnyValues any)
    {
        var compiler = new SchemaCompiler(schema, options, any);
        var node = compiler.Node(schema, "#");
        // $refs are resolved last (each target compiled once), so that schemas may refer to themselves.
        for (int i = 0; i < compiler._refs.Count; i++)
        {
            var reference = compiler._refs[i];
            reference.Target = compiler.Resolve(reference.Pointer);
        }
        return node;
    }

    private GrammarNode Resolve(string pointer)
    {
        if (_byPointer.TryGetValue(pointer, out var known)) return known;
        if (SchemaPointer.Find(_root, pointer) is not { } target) throw new SchemaNotSupportedException("$ref", $"'$ref': '{pointer}' does not point into the schema.");
        var placeholder = new RefNode(pointer);
        _byPointer[pointer] = placeholder;
        var node = Node(target, pointer);
        placeholder.Target = node;
        _byPointer[pointer] = node;
        return node;
    }

    private GrammarNode Node(JsonElement schema, string path)
    {
        if (schema.ValueKind == JsonValueKind.True) return _any.At(0);
        if (schema.ValueKind != JsonValueKind.Object)
            throw new SchemaNotSupportedException(schema.ValueKind == JsonValueKind.False ? "false" : "schema", $"The schema at '{path}' must be an object (or true).");
        var keywords = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in schema.EnumerateObject())
        {
            if (s_annotations.Contains(property.Name)) continue;
            if (!s_assertions.Contains(property.Name))
                throw new SchemaNotSupportedException(property.Name, $"The schema keyword '{property.Name}' (at '{path}') is not supported by constrained decoding.");
            keywords.Add(property.Name);
        }

        if (keywords.Contains("$ref"))
        {
            Alone(keywords, "$ref", path);
            string pointer = schema.GetProperty("$ref").GetString() ?? "";
            if (pointer != "#" && !pointer.StartsWith("#/", StringComparison.Ordinal))
                throw new SchemaNotSupportedException("$ref", $"'$ref': only references into the same schema (#/...) are supported; got '{pointer}'.");
            var reference = new RefNode(pointer);
            _refs.Add(reference);
            return reference;
        }
        if (keywords.Contains("allOf"))
        {
            Alone(keywords, "allOf", path);
            var all = schema.GetProperty("allOf");
            if (all.ValueKind != JsonValueKind.Array || all.GetArrayLength() != 1)
                throw new SchemaNotSupportedException("allOf", $"'allOf' (at '{path}') is supported with exactly one schema.");
            return Node(all[0], $"{path}/allOf/0");
        }
        foreach (string combinator in new[] { "anyOf", "oneOf" })
        {
            if (!keywords.Contains(combinator)) continue;
            Alone(keywords, combinator, path);
            var list = schema.GetProperty(combinator);
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
                throw new SchemaNotSupportedException(combinator, $"'{combinator}' (at '{path}') must be a non-empty array.");
            if (combinator == "oneOf") OneOfCheck.EnsureDisjoint(list, _root, path);
            return new ChoiceNode(list.EnumerateArray().Select((s, i) => Node(s, $"{path}/{combinator}/{i}")).ToArray());
        }

        var types = Types(schema, path);
        if (keywords.Contains("enum") || keywords.Contains("const")) return Literals(schema, types, path);
        types ??= Inferred(keywords);
        if (types is null) return _any.At(0);
        var nodes = types.Distinct().Select(type => TypeNode(type, schema, path)).ToArray();
        return nodes.Length == 1 ? nodes[0] : new ChoiceNode(nodes);
    }

    private static void Alone(HashSet<string> keywords, string keyword, string path)
    {
        if (keywords.Count > 1)
            throw new SchemaNotSupportedException(keyword, $"'{keyword}' (at '{path}') cannot be combined with {string.Join(", ", keywords.Where(k => k != keyword).Select(k => $"'{k}'"))} in one schema.");
    }

    private static string[]? Types(JsonElement schema, string path)
    {
        if (!schema.TryGetProperty("type", out var type)) return null;
        string[] names = type.ValueKind switch
        {
            JsonValueKind.String => [type.GetString()!],
            JsonValueKind.Array when type.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String) => type.EnumerateArray().Select(t => t.GetString()!).ToArray(),
            _ => throw new SchemaNotSupportedException("type", $"'type' (at '{path}') must be a string or an array of strings."),
        };
        foreach (string name in names)
        {
            if (!s_types.Contains(name)) throw new SchemaNotSupportedException("type", $"'type' (at '{path}'): unknown type '{name}'.");
        }
        return names;
    }

    /// <summary>A schema without <c>type</c> whose keywords belong to one type only is read as that type.</summary>
    private static string[]? Inferred(HashSet<string> keywords)
    {
        if (keywords.Overlaps(["properties", "required", "additionalProperties"])) return ["object"];
        if (keywords.Overlaps(["items", "minItems", "maxItems"])) return ["array"];
        if (keywords.Overlaps(["minLength", "maxLength"])) return ["string"];
        return null;
    }

    private GrammarNode Literals(JsonElement schema, string[]? types, string path)
    {
        var values = new List<JsonElement>();
        if (schema.TryGetProperty("const", out var constant)) values.Add(constant);
        if (schema.TryGetProperty("enum", out var list))
        {
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
                throw new SchemaNotSupportedException("enum", $"'enum' (at '{path}') must be a non-empty array.");
            var listed = list.EnumerateArray().ToList();
            // Both given: only the const value, if the enum lists it.
            values = values.Count == 0 ? listed : values.Where(v => listed.Any(l => JsonElement.DeepEquals(l, v))).ToList();
        }
        if (types is not null) values = values.Where(v => types.Any(t => Fits(v, t))).ToList();
        if (values.Count == 0)
            throw new SchemaNotSupportedException(schema.TryGetProperty("enum", out _) ? "enum" : "const", $"No value of 'enum'/'const' (at '{path}') satisfies the schema.");
        return new LiteralNode(values.Select((v, i) => (System.Text.Encoding.UTF8.GetBytes(JsonText.Compact(v)), i)));
    }

    private static bool Fits(JsonElement value, string type) => type switch
    {
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        "object" => value.ValueKind == JsonValueKind.Object,
        _ => value.ValueKind == JsonValueKind.Array,
    };

    private GrammarNode TypeNode(string type, JsonElement schema, string path) => type switch
    {
        "string" => new StringNode(Count(schema, "minLength", path) ?? 0, Count(schema, "maxLength", path)),
        "number" => new NumberNode(false, _options.MaxNumberDigits),
        "integer" => new NumberNode(true, _options.MaxNumberDigits),
        "boolean" => new LiteralNode([("true"u8.ToArray(), 0), ("false"u8.ToArray(), 1)]),
        "null" => LiteralNode.Text("null"),
        "object" => ObjectOf(schema, path),
        _ => ArrayOf(schema, path),
    };

    private static int? Count(JsonElement schema, string keyword, string path)
    {
        if (!schema.TryGetProperty(keyword, out var value)) return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int n) && n >= 0
            ? n
            : throw new SchemaNotSupportedException(keyword, $"'{keyword}' (at '{path}') must be a non-negative integer.");
    }

    private GrammarNode ObjectOf(JsonElement schema, string path)
    {
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("required", out var names))
        {
            if (names.ValueKind != JsonValueKind.Array || !names.EnumerateArray().All(n => n.ValueKind == JsonValueKind.String))
                throw new SchemaNotSupportedException("required", $"'required' (at '{path}') must be an array of property names.");
            foreach (var name in names.EnumerateArray()) required.Add(name.GetString()!);
        }
        var properties = new List<PropertySpec>();
        if (schema.TryGetProperty("properties", out var declared))
        {
            if (declared.ValueKind != JsonValueKind.Object) throw new SchemaNotSupportedException("properties", $"'properties' (at '{path}') must be an object.");
            foreach (var property in declared.EnumerateObject())
                properties.Add(new PropertySpec(property.Name, Node(property.Value, $"{path}/properties/{property.Name}"), required.Contains(property.Name)));
        }
        if (required.FirstOrDefault(r => properties.All(p => p.Name != r)) is { } undeclared)
            throw new SchemaNotSupportedException("required", $"'required' (at '{path}') names '{undeclared}', which is not in 'properties'.");
        GrammarNode? additional = _any.At(0);
        if (schema.TryGetProperty("additionalProperties", out var extra))
            additional = extra.ValueKind == JsonValueKind.False ? null : Node(extra, $"{path}/additionalProperties");
        return new ObjectNode(properties, additional, _any.FreeKey);
    }

    private GrammarNode ArrayOf(JsonElement schema, string path)
    {
        GrammarNode items = _any.At(0);
        if (schema.TryGetProperty("items", out var itemSchema))
        {
            if (itemSchema.ValueKind == JsonValueKind.Array)
                throw new SchemaNotSupportedException("items", $"'items' as an array (tuple validation, at '{path}') is not supported.");
            items = Node(itemSchema, $"{path}/items");
        }
        int min = Count(schema, "minItems", path) ?? 0;
        int? max = Count(schema, "maxItems", path);
        if (max < min) throw new SchemaNotSupportedException("maxItems", $"'maxItems' (at '{path}') is below 'minItems': no array fits.");
        return new ArrayNode(items, min, max);
    }
}

/// <summary>
/// Nodes for "any JSON value" at each nesting depth, built once per grammar compiler: past
/// <see cref="StructuredOutputOptions.MaxAnyDepth"/> only scalars are allowed, so that a model cannot
/// nest free-form values without end.
/// </summary>
internal sealed class AnyValues
{
    private readonly GrammarNode[] _atDepth;

    public AnyValues(StructuredOutputOptions options)
    {
        FreeKey = new StringNode(0, null, isFreeKey: true);
        GrammarNode[] scalars =
        [
            new StringNode(0, null),
            new NumberNode(false, options.MaxNumberDigits),
            new LiteralNode([("true"u8.ToArray(), 0), ("false"u8.ToArray(), 1), ("null"u8.ToArray(), 2)]),
        ];
        _atDepth = new GrammarNode[options.MaxAnyDepth + 1];
        _atDepth[options.MaxAnyDepth] = new ChoiceNode(scalars);
        for (int depth = options.MaxAnyDepth - 1; depth >= 0; depth--)
        {
            var inner = _atDepth[depth + 1];
            _atDepth[depth] = new ChoiceNode([new ObjectNode([], inner, FreeKey), new ArrayNode(inner, 0, null), .. scalars]);
        }
    }

    public StringNode FreeKey { get; }

    public GrammarNode At(int depth) => _atDepth[Math.Min(depth, _atDepth.Length - 1)];
}
