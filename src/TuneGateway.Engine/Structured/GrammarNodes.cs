namespace TuneGateway.Engine.Structured;

// The compiled form of a grammar: a graph of nodes, each of which says what one JSON value (or a
// piece of literal text) may look like. Frames (GrammarFrames.cs) walk it byte by byte. Nodes are
// immutable once compiled and compared by reference, which is what makes automaton states cheap to
// compare and masks cacheable per state.

/// <summary>A part of a grammar: a JSON value of some shape, or fixed text.</summary>
internal abstract class GrammarNode;

/// <summary>Any one of the alternatives (anyOf, oneOf, a list of types).</summary>
internal sealed class ChoiceNode(IReadOnlyList<GrammarNode> alternatives) : GrammarNode
{
    public IReadOnlyList<GrammarNode> Alternatives { get; } = alternatives;
}

/// <summary>A <c>$ref</c>, resolved once the whole schema is compiled (so that schemas can recurse).</summary>
internal sealed class RefNode(string pointer) : GrammarNode
{
    public string Pointer { get; } = pointer;
    public GrammarNode? Target { get; set; }
}

/// <summary>
/// One of a fixed set of byte strings: enum and const values (as compact JSON), true, false,
/// null, object keys, and the fixed text of tool-call formats. The strings share a prefix tree.
/// </summary>
internal sealed class LiteralNode : GrammarNode
{
    public LiteralNode(IEnumerable<(byte[] Bytes, int Tag)> options)
    {
        Root = new LiteralTrie();
        foreach (var (bytes, tag) in options) Root.Add(bytes, tag);
    }

    public LiteralTrie Root { get; }

    public static LiteralNode Text(string text) => new([(System.Text.Encoding.UTF8.GetBytes(text), 0)]);
}

/// <summary>A prefix tree of literal byte strings; <see cref="Tag"/> (≥ 0) marks where one ends.</summary>
internal sealed class LiteralTrie
{
    private readonly Dictionary<byte, LiteralTrie> _next = [];

    public int Tag { get; private set; } = -1;
    public bool IsEnd => Tag >= 0;

    public LiteralTrie? Next(byte b) => _next.GetValueOrDefault(b);

    public void Add(ReadOnlySpan<byte> bytes, int tag)
    {
        var node = this;
        foreach (byte b in bytes)
        {
            if (!node._next.TryGetValue(b, out var child)) node._next[b] = child = new LiteralTrie();
            node = child;
        }
        if (node.Tag < 0) node.Tag = tag;
    }
}

/// <summary>
/// A JSON string. With a length bound, only printable ASCII and the escapes <c>\" \\ \/ \n \t</c>
/// are allowed, so that code points, UTF-16 units and grapheme clusters (what validators count)
/// agree. <see cref="IsFreeKey"/>: an object key other than the declared ones, kept free of escapes
/// so that its bytes are its text (the object checks it for duplicates).
/// </summary>
internal sealed class StringNode(int minLength, int? maxLength, bool isFreeKey = false) : GrammarNode
{
    public int MinLength { get; } = minLength;
    public int? MaxLength { get; } = maxLength;
    public bool IsFreeKey { get; } = isFreeKey;
    public bool Counts => MinLength > 0 || MaxLength is not null;
    public bool AsciiOnly => Counts;
}

/// <summary>A JSON number without an exponent (integers: no fraction either), with bounded digit counts.</summary>
internal sealed class NumberNode(bool integer, int maxDigits) : GrammarNode
{
    public bool Integer { get; } = integer;
    public int MaxDigits { get; } = maxDigits;
}

/// <summary>A declared property of an object.</summary>
internal sealed record PropertySpec(string Name, GrammarNode Value, bool Required);

/// <summary>
/// A JSON object. Declared properties come in their declared order (optional ones may be left
/// out, required ones may not), which keeps the automaton small and mirrors what OpenAI's strict
/// mode produces; other keys are allowed anywhere when <see cref="Additional"/> is set.
/// </summary>
internal sealed class ObjectNode : GrammarNode
{
    public ObjectNode(IReadOnlyList<PropertySpec> properties, GrammarNode? additional, StringNode freeKey)
    {
        Properties = properties;
        Additional = additional;
        FreeKey = freeKey;
        LastRequired = -1;
        for (int i = 0; i < properties.Count; i++) if (properties[i].Required) LastRequired = i;
        Names = properties.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        // KeysFrom[n]: the keys that may come next when properties before n are settled: n up to the first required one.
        KeysFrom = new LiteralNode?[properties.Count + 1];
        for (int n = 0; n <= properties.Count; n++)
        {
            var options = new List<(byte[], int)>();
            for (int i = n; i < properties.Count; i++)
            {
                options.Add((System.Text.Encoding.UTF8.GetBytes(JsonText.Quote(properties[i].Name)), i));
                if (properties[i].Required) break;
            }
            KeysFrom[n] = options.Count > 0 ? new LiteralNode(options) : null;
        }
    }

    public IReadOnlyList<PropertySpec> Properties { get; }
    public GrammarNode? Additional { get; }
    public StringNode FreeKey { get; }
    public int LastRequired { get; }
    public IReadOnlySet<string> Names { get; }
    public LiteralNode?[] KeysFrom { get; }

    public bool RequiredDone(int next) => next > LastRequired;
    public bool MoreKeys(int next) => KeysFrom[next] is not null || Additional is not null;
}

/// <summary>A JSON array of <see cref="Items"/> with at least <see cref="MinItems"/> and at most <see cref="MaxItems"/>.</summary>
internal sealed class ArrayNode(GrammarNode items, int minItems, int? maxItems) : GrammarNode
{
    public GrammarNode Items { get; } = items;
    public int MinItems { get; } = minItems;
    public int? MaxItems { get; } = maxItems;
    /// <summary>Counts above this are all alike (no bound left to check): counting stops there, so states repeat and masks cache.</summary>
    public int CountCap => Math.Max(MinItems, MaxItems ?? 0);
}

/// <summary>Parts one after the other (tool-call formats: fixed text, a JSON call, fixed text).</summary>
internal sealed class SequenceNode(IReadOnlyList<GrammarNode> parts) : GrammarNode
{
    public IReadOnlyList<GrammarNode> Parts { get; } = parts;
}

/// <summary><see cref="Item"/> between <see cref="Min"/> and <see cref="Max"/> times, with a separator between.</summary>
internal sealed class RepeatNode(GrammarNode item, GrammarNode separator, int min, int? max) : GrammarNode
{
    public GrammarNode Item { get; } = item;
    public SequenceNode SeparatorThenItem { get; } = new([separator, item]);
    public int Min { get; } = min;
    public int? Max { get; } = max;
    public int CountCap => Math.Max(Min, Max ?? 0);
}
