using System.Text.Json;
using TuneGateway.Engine.Structured;

namespace TuneGateway.Worker.Tools;

/// <summary>A function the client offers: its name and the JSON Schema of its arguments.</summary>
public sealed record ToolFunction(string Name, JsonElement Parameters);

/// <summary>One call read from a model's output; <see cref="Arguments"/> is the JSON text as the model wrote it.</summary>
public sealed record ParsedToolCall(string Name, string Arguments);

/// <summary>
/// How a model family writes tool calls (<c>--tool-call-parser</c>). Every format here writes each
/// call as a JSON object <c>{"name": ..., "arguments": {...}}</c> (Llama 3: <c>"parameters"</c>)
/// somewhere after a start: a marker, or the output's first character. The formats differ only in
/// that start and in the text around and between the objects, so one scanner
/// (<see cref="ToolCallScanner"/>) reads them all, whole or streamed.
/// </summary>
public abstract class ToolCallFormat
{
    /// <summary>The <c>--tool-call-parser</c> names.</summary>
    public static IReadOnlyList<string> Names { get; } = ["hermes", "llama3_json", "mistral"];

    public static ToolCallFormat? ByName(string? name) => name switch
    {
        null => null,
        "hermes" => new HermesFormat(),
        "llama3_json" => new Llama3JsonFormat(),
        "mistral" => new MistralFormat(),
        _ => throw new ArgumentException($"Unknown tool-call parser '{name}' (known: {string.Join(", ", Names)}).", nameof(name)),
    };

    public abstract string Name { get; }

    /// <summary>The key the arguments go under in the format's JSON calls.</summary>
    protected virtual string ArgumentsKey => "arguments";

    /// <summary>Keys a parsed call may carry its arguments under.</summary>
    internal virtual IReadOnlyList<string> ArgumentKeys => ["arguments"];

    /// <summary>Whether special tokens must stay in the text (a marker that is a special token in the model's vocabulary).</summary>
    public virtual bool KeepsSpecialTokens => false;

    /// <summary>
    /// Where the tool calls begin in <paramref name="text"/>: the index of the region holding the
    /// calls, or -1 when there are none (yet); <paramref name="contentEnd"/>: where the content before them ends.
    /// </summary>
    internal abstract int FindStart(string text, out int contentEnd);

    /// <summary>How many characters at the end of <paramref name="text"/> must be held back from streamed content: they may begin the start marker.</summary>
    internal abstract int HoldBack(string text);

    /// <summary>The grammar of valid calls to <paramref name="functions"/> in this format: one, or (parallel) one or more.</summary>
    public abstract GrammarPart Calls(IReadOnlyList<ToolFunction> functions, bool parallel);

    /// <summary>One call as this format writes it: the const name, then arguments fitting the function's schema.</summary>
    protected GrammarPart Call(IReadOnlyList<ToolFunction> functions)
    {
        var options = functions.Select(f => (GrammarPart)new GrammarPart.JsonObject(
        [
            ("name", new GrammarPart.Json(JsonSerializer.SerializeToElement(new Dictionary<string, string> { ["const"] = f.Name }))),
            (ArgumentsKey, new GrammarPart.Json(f.Parameters)),
        ])).ToArray();
        return options.Length == 1 ? options[0] : new GrammarPart.Choice(options);
    }

    /// <summary>The content and the calls of a whole output (no calls: the text is all content).</summary>
    public (string? Content, IReadOnlyList<ParsedToolCall> Calls) Parse(string text)
    {
        int start = FindStart(text, out int contentEnd);
        if (start < 0) return (text, []);
        var calls = ToolCallScanner.Objects(text, start).Select(span => ToolCallScanner.Read(text.Substring(span.Start, span.Length), ArgumentKeys)).ToList();
        // Anything unreadable (cut JSON, a call without a name) and the output stays text, as vLLM's parsers do.
        if (calls.Count == 0 || calls.Any(c => c is null)) return (text, []);
        string content = text[..contentEnd];
        return (content.Trim().Length == 0 ? null : content, calls!);
    }

    /// <summary>The region after <paramref name="marker"/>; the content ends where the marker begins.</summary>
    protected static int FindMarker(string text, string marker, out int contentEnd)
    {
        contentEnd = text.IndexOf(marker, StringComparison.Ordinal);
        return contentEnd < 0 ? -1 : contentEnd + marker.Length;
    }

    /// <summary>The length of the longest tail of <paramref name="text"/> that begins <paramref name="marker"/>.</summary>
    protected static int MarkerPrefixAtEnd(string text, string marker)
    {
        for (int length = Math.Min(marker.Length - 1, text.Length); length > 0; length--)
        {
            if (text.AsSpan(text.Length - length).SequenceEqual(marker.AsSpan(0, length))) return length;
        }
        return 0;
    }
}

/// <summary>Hermes and Qwen 2.5: <c>&lt;tool_call&gt;\n{"name": ..., "arguments": {...}}\n&lt;/tool_call&gt;</c>, one block per call.</summary>
internal sealed class HermesFormat : ToolCallFormat
{
    private const string Open = "<tool_call>";

    public override string Name => "hermes";

    internal override int FindStart(string text, out int contentEnd) => FindMarker(text, Open, out contentEnd);

    internal override int HoldBack(string text) => MarkerPrefixAtEnd(text, Open);

    public override GrammarPart Calls(IReadOnlyList<ToolFunction> functions, bool parallel) => new GrammarPart.Repeat(
        new GrammarPart.Sequence([new GrammarPart.Text(Open + "\n"), Call(functions), new GrammarPart.Text("\n</tool_call>")]), "\n", 1, parallel ? null : 1);
}

/// <summary>
/// Llama 3.1/3.2 JSON tool calls: the output is <c>{"name": ..., "parameters": {...}}</c> (several
/// separated by <c>;</c>), optionally after <c>&lt;|python_tag|&gt;</c>; an output that starts with
/// anything else is content.
/// </summary>
internal sealed class Llama3JsonFormat : ToolCallFormat
{
    private const string PythonTag = "<|python_tag|>";

    public override string Name => "llama3_json";

    protected override string ArgumentsKey => "parameters";

    internal override IReadOnlyList<string> ArgumentKeys => ["parameters", "arguments"];

    internal override int FindStart(string text, out int contentEnd)
    {
        contentEnd = 0;
        int at = 0;
        while (at < text.Length && char.IsWhiteSpace(text[at])) at++;
        if (text.AsSpan(at).StartsWith(PythonTag, StringComparison.Ordinal)) at += PythonTag.Length;
        while (at < text.Length && char.IsWhiteSpace(text[at])) at++;
        return at < text.Length && text[at] == '{' ? at : -1;
    }

    /// <summary>Until the first character that is not whitespace or the python tag, the output may still become a call.</summary>
    internal override int HoldBack(string text)
    {
        string rest = text.TrimStart();
        return rest.Length == 0 || PythonTag.StartsWith(rest, StringComparison.Ordinal) ? text.Length : 0;
    }

    public override GrammarPart Calls(IReadOnlyList<ToolFunction> functions, bool parallel) =>
        new GrammarPart.Repeat(Call(functions), "; ", 1, parallel ? null : 1);
}

/// <summary>Mistral (v0.3 and later): <c>[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]</c>.</summary>
internal sealed class MistralFormat : ToolCallFormat
{
    private const string Marker = "[TOOL_CALLS]";

    public override string Name => "mistral";

    /// <summary>[TOOL_CALLS] is a special token in Mistral's vocabulary; it must stay in the text to be found.</summary>
    public override bool KeepsSpecialTokens => true;

    internal override int FindStart(string text, out int contentEnd) => FindMarker(text, Marker, out contentEnd);

    internal override int HoldBack(string text) => MarkerPrefixAtEnd(text, Marker);

    public override GrammarPart Calls(IReadOnlyList<ToolFunction> functions, bool parallel) =>
        new GrammarPart.Sequence([new GrammarPart.Text(Marker), new GrammarPart.JsonArray(Call(functions), 1, parallel ? null : 1)]);
}
