using System.Collections;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>
/// Turns what callers pass (JSON documents, dictionaries, lists, numbers of any width, <see cref="ChatMessage"/>)
/// into the value model of the interpreter: string, long, double, bool, null, <c>List&lt;object?&gt;</c>,
/// <c>Dictionary&lt;string, object?&gt;</c>. Everything is copied, so a template can never change the caller's data.
/// Data nested deeper than <see cref="PyOps.MaxNesting"/> is refused (a <see cref="ChatTemplateException"/>), and a
/// .NET type outside this model is a programming error (<see cref="ArgumentException"/>).
/// </summary>
internal static class ValueConverter
{
    /// <summary>Converts one value.</summary>
    public static object? ToTemplateValue(object? value) => Convert(value, 0);

    private static object? Convert(object? value, int depth)
    {
        if (depth > PyOps.MaxNesting)
        {
            throw TooDeep();
        }

        switch (value)
        {
            case null or string or bool or long or double:
                return value;
            case int or short or sbyte or byte or ushort or uint:
                return System.Convert.ToInt64(value, CultureInfo.InvariantCulture);
            case ulong u:
                return u <= long.MaxValue ? (object)(long)u : (double)u;
            case float f:
                return (double)f;
            case decimal m:
                return decimal.Truncate(m) == m && m >= long.MinValue && m <= long.MaxValue ? (object)(long)m : (double)m;
            case char c:
                return c.ToString();
            case JsonElement element:
                return FromJson(element, depth);
            case JsonNode node:
                return FromJson(JsonSerializer.SerializeToElement(node), depth);
            case ChatMessage message:
                return message.ToTemplateValue();
            case ChatToolCall call:
                return call.ToTemplateValue();
            case Undefined or Namespace:
                return value;
            case IDictionary<string, object?> dict:
                return dict.ToDictionary(e => e.Key, e => Convert(e.Value, depth + 1), StringComparer.Ordinal);
            case IReadOnlyDictionary<string, object?> dict:
                return dict.ToDictionary(e => e.Key, e => Convert(e.Value, depth + 1), StringComparer.Ordinal);
            case IDictionary dict:
                {
                    var result = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (DictionaryEntry entry in dict)
                    {
                        result[System.Convert.ToString(entry.Key, CultureInfo.InvariantCulture) ?? ""] = Convert(entry.Value, depth + 1);
                    }

                    return result;
                }

            case IEnumerable sequence:
                return sequence.Cast<object?>().Select(item => Convert(item, depth + 1)).ToList();
            default:
                throw new ArgumentException(
                    $"Chat template input of type {value.GetType().Name} is not supported; use strings, numbers, booleans, lists, dictionaries or JSON",
                    nameof(value));
        }
    }

    private static ChatTemplateException TooDeep() => new(
        ChatTemplateErrorKind.Render,
        $"the input (messages, tools or other variables) nests more than {PyOps.MaxNesting} levels deep");

    private static object? FromJson(JsonElement element, int depth)
    {
        if (depth > PyOps.MaxNesting)
        {
            throw TooDeep();
        }

        switch (element.ValueKind)
        {
            case JsonValueKind.Null or JsonValueKind.Undefined:
                return null;
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            case JsonValueKind.String:
                return element.GetString();
            case JsonValueKind.Number:
                {
                    // As Python's json module: a number without fraction or exponent is an int.
                    var raw = element.GetRawText();
                    if (raw.IndexOfAny(['.', 'e', 'E']) < 0 && long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
                    {
                        return integer;
                    }

                    return element.GetDouble();
                }

            case JsonValueKind.Array:
                return element.EnumerateArray().Select(item => FromJson(item, depth + 1)).ToList();
            case JsonValueKind.Object:
                {
                    var result = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var property in element.EnumerateObject())
                    {
                        result[property.Name] = FromJson(property.Value, depth + 1);
                    }

                    return result;
                }

            default:
                return null;
        }
    }
}
