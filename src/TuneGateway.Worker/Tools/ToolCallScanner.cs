using System.Text.Json;

namespace TuneGateway.Worker.Tools;

/// <summary>
/// Reads JSON tool calls out of text that may still be growing: where each top-level object is
/// (whether closed yet), and inside one, the call's name and the exact span of its arguments, so
/// that streamed argument fragments add up to the same text the whole answer reports.
/// </summary>
internal static class ToolCallScanner
{
    /// <summary>A top-level JSON object in the text; <see cref="Closed"/> once its closing brace is there.</summary>
    public readonly record struct ObjectSpan(int Start, int Length, bool Closed);

    /// <summary>What a (possibly partial) call object shows so far. <see cref="ArgumentsEnd"/> is -1 while the arguments are open.</summary>
    public readonly record struct CallShape(string? Name, int ArgumentsStart, int ArgumentsEnd);

    /// <summary>The objects from <paramref name="from"/> on; text outside them (markers, separators, brackets) is skipped.</summary>
    public static IEnumerable<ObjectSpan> Objects(string text, int from)
    {
        int at = from;
        while (at < text.Length)
        {
            if (text[at] != '{')
            {
                at++;
                continue;
            }
            int end = SkipValue(text, at);
            if (end < 0)
            {
                yield return new ObjectSpan(at, text.Length - at, false);
                yield break;
            }
            yield return new ObjectSpan(at, end - at, true);
            at = end;
        }
    }

    /// <summary>A whole call: null unless it is a JSON object with a string name and (if any) object arguments.</summary>
    public static ParsedToolCall? Read(string call, IReadOnlyList<string> argumentKeys)
    {
        try
        {
            using var doc = JsonDocument.Parse(call);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String) return null;
            var shape = Shape(call, argumentKeys);
            if (shape.ArgumentsStart < 0) return new ParsedToolCall(name.GetString()!, "{}");
            string arguments = call[shape.ArgumentsStart..shape.ArgumentsEnd];
            using var args = JsonDocument.Parse(arguments);
            return args.RootElement.ValueKind == JsonValueKind.Object ? new ParsedToolCall(name.GetString()!, arguments) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The top-level members of a call object read so far: its name once that string is closed, where the arguments value starts and ends.</summary>
    public static CallShape Shape(string call, IReadOnlyList<string> argumentKeys)
    {
        string? name = null;
        int argsStart = -1, argsEnd = -1;
        int at = SkipWhitespace(call, 1);
        while (at < call.Length && call[at] == '"')
        {
            int keyEnd = SkipString(call, at);
            if (keyEnd < 0) break;
            string key = Unquote(call[at..keyEnd]);
            at = SkipWhitespace(call, keyEnd);
            if (at >= call.Length || call[at] != ':') break;
            int valueStart = SkipWhitespace(call, at + 1);
            if (valueStart >= call.Length) break;
            int valueEnd = SkipValue(call, valueStart);
            if (argumentKeys.Contains(key) && argsStart < 0)
            {
                argsStart = valueStart;
                argsEnd = valueEnd;
            }
            if (valueEnd < 0) break;
            if (key == "name" && call[valueStart] == '"') name = Unquote(call[valueStart..valueEnd]);
            at = SkipWhitespace(call, valueEnd);
            if (at >= call.Length || call[at] != ',') break;
            at = SkipWhitespace(call, at + 1);
        }
        return new CallShape(name, argsStart, argsEnd);
    }

    private static string Unquote(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<string>(json) ?? "";
        }
        catch (JsonException)
        {
            return "";
        }
    }

    private static int SkipWhitespace(string text, int at)
    {
        while (at < text.Length && char.IsWhiteSpace(text[at])) at++;
        return at;
    }

    /// <summary>The index after the string starting at <paramref name="at"/>, or -1 when it is not closed yet.</summary>
    private static int SkipString(string text, int at)
    {
        for (int i = at + 1; i < text.Length; i++)
        {
            if (text[i] == '\\') i++;
            else if (text[i] == '"') return i + 1;
        }
        return -1;
    }

    /// <summary>The index after the JSON value starting at <paramref name="at"/>, or -1 when it is not complete yet.</summary>
    private static int SkipValue(string text, int at)
    {
        char first = text[at];
        if (first == '"') return SkipString(text, at);
        if (first is not ('{' or '['))
        {
            // A scalar ends at a delimiter; at the end of the text it may still go on.
            for (int i = at; i < text.Length; i++)
            {
                if (text[i] is ',' or '}' or ']' || char.IsWhiteSpace(text[i])) return i;
            }
            return -1;
        }
        int depth = 0;
        for (int i = at; i < text.Length; i++)
        {
            switch (text[i])
            {
                case '"':
                    i = SkipString(text, i) - 1;
                    if (i < 0) return -1;
                    break;
                case '{' or '[':
                    depth++;
                    break;
                case '}' or ']':
                    if (--depth == 0) return i + 1;
                    break;
            }
        }
        return -1;
    }
}
