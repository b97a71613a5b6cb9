using System.Text.Json;

namespace TuneGateway.Engine.Structured;

/// <summary>
/// What a constrained output must look like, before compilation: JSON fitting a schema, fixed
/// text, and their combinations (tool-call formats wrap JSON calls in fixed text).
/// </summary>
public abstract record GrammarPart
{
    /// <summary>A JSON value that validates against <paramref name="Schema"/> (its own document: $refs resolve inside it).</summary>
    public sealed record Json(JsonElement Schema) : GrammarPart;

    /// <summary>Exactly this text.</summary>
    public sealed record Text(string Value) : GrammarPart;

    /// <summary>A JSON object with exactly these properties, in this order (each value a JSON part).</summary>
    public sealed record JsonObject(IReadOnlyList<(string Key, GrammarPart Value)> Properties) : GrammarPart;

    /// <summary>One of the options.</summary>
    public sealed record Choice(IReadOnlyList<GrammarPart> Options) : GrammarPart;

    /// <summary>The parts one after the other.</summary>
    public sealed record Sequence(IReadOnlyList<GrammarPart> Parts) : GrammarPart;

    /// <summary><paramref name="Item"/> between <paramref name="Min"/> and <paramref name="Max"/> (null: unbounded) times, <paramref name="Separator"/> between.</summary>
    public sealed record Repeat(GrammarPart Item, string Separator, int Min, int? Max) : GrammarPart;

    /// <summary>A JSON array of <paramref name="Item"/>s.</summary>
    public sealed record JsonArray(GrammarPart Item, int Min, int? Max) : GrammarPart;

    /// <summary>A key for caching compiled grammars: equal keys, equal grammars.</summary>
    internal string CacheKey() => this switch
    {
        Json j => "J" + j.Schema.GetRawText(),
        Text t => "T" + JsonText.Quote(t.Value),
        JsonObject o => "O{" + string.Join(",", o.Properties.Select(p => JsonText.Quote(p.Key) + ":" + p.Value.CacheKey())) + "}",
        Choice c => "C(" + string.Join("|", c.Options.Select(x => x.CacheKey())) + ")",
        Sequence s => "S(" + string.Join(" ", s.Parts.Select(x => x.CacheKey())) + ")",
        Repeat r => $"R{r.Min},{r.Max}," + JsonText.Quote(r.Separator) + "(" + r.Item.CacheKey() + ")",
        JsonArray a => $"A{a.Min},{a.Max}(" + a.Item.CacheKey() + ")",
        _ => throw new InvalidOperationException(),
    };

    /// <summary>Compiles to grammar nodes; throws <see cref="SchemaNotSupportedException"/>.</summary>
    internal GrammarNode Compile(StructuredOutputOptions options, AnyValues any) => this switch
    {
        Json j => SchemaCompiler.Compile(j.Schema, options, any),
        Text t => LiteralNode.Text(t.Value),
        JsonObject o => new ObjectNode(o.Properties.Select(p => new PropertySpec(p.Key, p.Value.Compile(options, any), true)).ToArray(), null, any.FreeKey),
        Choice c => new ChoiceNode(c.Options.Select(x => x.Compile(options, any)).ToArray()),
        Sequence s => new SequenceNode(s.Parts.Select(x => x.Compile(options, any)).ToArray()),
        Repeat r => new RepeatNode(r.Item.Compile(options, any), LiteralNode.Text(r.Separator), r.Min, r.Max),
        JsonArray a => new ArrayNode(a.Item.Compile(options, any), a.Min, a.Max),
        _ => throw new InvalidOperationException(),
    };
}
