using System.Text;
using System.Text.Json.Serialization;

namespace TuneGateway.Worker.Tools;

/// <summary>One tool call's part of a streamed delta, as OpenAI sends it.</summary>
public sealed record ToolCallDelta(int Index,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Type,
    ToolCallFunctionDelta Function);

public sealed record ToolCallFunctionDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Arguments);

/// <summary>
/// Turns one choice's streamed text into content and tool-call deltas: content until the format's
/// start (holding back text that may begin its marker), then for each call first a delta with its
/// id, type and name, then its arguments as they grow. Not thread-safe: one per choice.
/// </summary>
internal sealed class ToolCallStream(ToolCallFormat format)
{
    private readonly StringBuilder _text = new();
    private readonly List<(string Id, bool Named, int ArgumentsSent)> _calls = [];
    private int _contentSent;
    private int _region = -1;

    /// <summary>Calls announced so far (their ids, in order).</summary>
    public IReadOnlyList<string> CallIds => _calls.Where(c => c.Named).Select(c => c.Id).ToArray();

    public (string? Content, IReadOnlyList<ToolCallDelta> Calls) Append(string piece, bool final)
    {
        _text.Append(piece);
        string text = _text.ToString();
        string? content = null;
        if (_region < 0)
        {
            int start = format.FindStart(text, out int contentEnd);
            int safe = start >= 0 ? contentEnd : final ? text.Length : text.Length - format.HoldBack(text);
            if (safe > _contentSent) content = text[_contentSent..safe];
            _contentSent = Math.Max(_contentSent, safe);
            _region = start;
            if (_region < 0) return (content, []);
        }
        return (content, CallDeltas(text, final));
    }

    private List<ToolCallDelta> CallDeltas(string text, bool final)
    {
        var deltas = new List<ToolCallDelta>();
        int index = 0;
        foreach (var span in ToolCallScanner.Objects(text, _region))
        {
            string call = text.Substring(span.Start, span.Length);
            var shape = ToolCallScanner.Shape(call, format.ArgumentKeys);
            if (_calls.Count <= index) _calls.Add((ToolCalls.NewId(), false, 0));
            var (id, named, sent) = _calls[index];
            if (!named && shape.Name is { } name)
            {
                deltas.Add(new ToolCallDelta(index, id, "function", new ToolCallFunctionDelta(name, "")));
                named = true;
            }
            if (named)
            {
                string arguments = shape.ArgumentsStart < 0 ? (span.Closed || final ? "{}" : "")
                    : call[shape.ArgumentsStart..(shape.ArgumentsEnd >= 0 ? shape.ArgumentsEnd : call.Length)];
                if (arguments.Length > sent)
                {
                    deltas.Add(new ToolCallDelta(index, null, null, new ToolCallFunctionDelta(null, arguments[sent..])));
                    sent = arguments.Length;
                }
            }
            _calls[index] = (id, named, sent);
            index++;
        }
        return deltas;
    }
}
