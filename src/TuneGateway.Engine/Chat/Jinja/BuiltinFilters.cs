using System.Globalization;
using System.Text;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>
/// The filters (<c>value | name(args)</c>): jinja2's built-ins that chat templates use, with jinja2's signatures
/// and results, and <c>tojson</c> as Hugging Face defines it (<c>json.dumps</c> with <c>ensure_ascii=False</c>).
/// </summary>
internal static class BuiltinFilters
{
    private delegate object? Filter(Renderer renderer, object? value, Arguments args);

    private static readonly Dictionary<string, Filter> Filters = new(StringComparer.Ordinal)
    {
        ["abs"] = (_, v, a) => Abs(v, a),
        ["attr"] = (_, v, a) => PyOps.GetAttribute(v, RequireString(a.Check(1).Required(0, "name"), "attr")),
        ["capitalize"] = (_, v, a) => PyText.Capitalize(PyRepr.Str(NoArgs(v, a))),
        ["center"] = (_, v, a) => Center(PyRepr.Str(v), a.Check(1, "width")),
        ["count"] = (_, v, a) => PyOps.Length(NoArgs(v, a)),
        ["length"] = (_, v, a) => PyOps.Length(NoArgs(v, a)),
        ["d"] = (_, v, a) => Default(v, a),
        ["default"] = (_, v, a) => Default(v, a),
        ["dictsort"] = (_, v, a) => DictSort(v, a),
        ["e"] = (_, v, a) => Escape(PyRepr.Str(NoArgs(v, a))),
        ["escape"] = (_, v, a) => Escape(PyRepr.Str(NoArgs(v, a))),
        ["forceescape"] = (_, v, a) => Escape(PyRepr.Str(NoArgs(v, a))),
        ["first"] = (_, v, a) => First(NoArgs(v, a)),
        ["last"] = (_, v, a) => Last(NoArgs(v, a)),
        ["float"] = (_, v, a) => ToFloat(v, a),
        ["format"] = (_, v, a) => Format(v, a),
        ["indent"] = (_, v, a) => Indent(v, a),
        ["int"] = (_, v, a) => ToInt(v, a),
        ["items"] = (_, v, a) => Items(NoArgs(v, a)),
        ["join"] = (_, v, a) => Join(v, a),
        ["list"] = (_, v, a) => PyOps.Iterate(NoArgs(v, a)).ToList(),
        ["lower"] = (_, v, a) => PyRepr.Str(NoArgs(v, a)).ToLowerInvariant(),
        ["upper"] = (_, v, a) => PyRepr.Str(NoArgs(v, a)).ToUpperInvariant(),
        ["map"] = (r, v, a) => Map(r, v, a),
        ["max"] = (_, v, a) => MinMax(v, a, max: true),
        ["min"] = (_, v, a) => MinMax(v, a, max: false),
        ["pprint"] = (_, v, a) => PyRepr.Repr(NoArgs(v, a)),
        ["reject"] = (r, v, a) => Select(r, v, a, byAttribute: false, keep: false),
        ["rejectattr"] = (r, v, a) => Select(r, v, a, byAttribute: true, keep: false),
        ["select"] = (r, v, a) => Select(r, v, a, byAttribute: false, keep: true),
        ["selectattr"] = (r, v, a) => Select(r, v, a, byAttribute: true, keep: true),
        ["replace"] = (_, v, a) => Replace(v, a),
        ["reverse"] = (_, v, a) => Reverse(NoArgs(v, a)),
        ["round"] = (_, v, a) => Round(v, a),
        ["safe"] = (_, v, a) => NoArgs(v, a),
        ["sort"] = (_, v, a) => Sort(v, a),
        ["string"] = (_, v, a) => PyRepr.Str(NoArgs(v, a)),
        ["sum"] = (_, v, a) => Sum(v, a),
        ["title"] = (_, v, a) => Title(PyRepr.Str(NoArgs(v, a))),
        ["tojson"] = (_, v, a) => ToJson(v, a),
        ["trim"] = (_, v, a) => PyText.Strip(PyRepr.Str(v), OptionalString(a.Check(1, "chars").Get(0, "chars"), "trim")),
        ["unique"] = (_, v, a) => Unique(v, a),
        ["wordcount"] = (_, v, a) => (long)PyRepr.Str(NoArgs(v, a)).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length,
    };

    /// <summary>Whether a filter of this name exists (checked when the template is parsed).</summary>
    public static bool Exists(string name) => Filters.ContainsKey(name);

    /// <summary>Applies filter <paramref name="name"/>.</summary>
    public static object? Apply(Renderer renderer, string name, object? value, Arguments args) =>
        Filters.TryGetValue(name, out var filter)
            ? filter(renderer, value, args)
            : throw new TemplateRuntimeError($"No filter named '{name}'.");

    /// <summary>The value of a filter that takes no arguments (rejecting any given).</summary>
    private static object? NoArgs(object? value, Arguments args)
    {
        args.Check(0);
        return value;
    }

    private static string RequireString(object? value, string filter) => value switch
    {
        string s => s,
        Undefined u => throw u.Fail(),
        _ => throw new TemplateRuntimeError($"{filter}: expected a string, got '{PyOps.TypeName(value)}'"),
    };

    private static string? OptionalString(object? value, string filter) => value is null ? null : RequireString(value, filter);

    private static long RequireInt(object? value, string filter) => PyOps.IsInteger(value)
        ? PyOps.ToLong(value)
        : throw new TemplateRuntimeError($"{filter}: expected an integer, got '{PyOps.TypeName(value)}'");

    private static object Abs(object? value, Arguments args)
    {
        args.Check(0);
        return value switch
        {
            bool or long => (object)Math.Abs(PyOps.ToLong(value)),
            double d => Math.Abs(d),
            Undefined u => throw u.Fail(),
            _ => throw new TemplateRuntimeError($"bad operand type for abs(): '{PyOps.TypeName(value)}'"),
        };
    }

    private static string Center(string value, Arguments args)
    {
        var width = (int)RequireInt(args.Get(0, "width", 80L), "center");
        var padding = width - PyText.CodePointCount(value);
        if (padding <= 0)
        {
            return value;
        }

        var left = (padding / 2) + (padding & width & 1);
        return new string(' ', left) + value + new string(' ', padding - left);
    }

    private static object? Default(object? value, Arguments args)
    {
        args.Check(2, "default_value", "boolean");
        var fallback = args.Get(0, "default_value", "");
        var boolean = PyOps.Truthy(args.Get(1, "boolean", false));
        return value is Undefined || (boolean && !PyOps.Truthy(value)) ? fallback : value;
    }

    private static string Escape(string value) => value
        .Replace("&", "&amp;", StringComparison.Ordinal)
        .Replace("<", "&lt;", StringComparison.Ordinal)
        .Replace(">", "&gt;", StringComparison.Ordinal)
        .Replace("\"", "&#34;", StringComparison.Ordinal)
        .Replace("'", "&#39;", StringComparison.Ordinal);

    private static object? First(object? value)
    {
        var items = PyOps.Iterate(value);
        return items.Count > 0 ? items[0] : Undefined.WithHint("No first item, sequence was empty.");
    }

    private static object? Last(object? value)
    {
        if (value is Dictionary<string, object?>)
        {
            throw new TemplateRuntimeError("'dict' object is not reversible");
        }

        var items = PyOps.Iterate(value);
        return items.Count > 0 ? items[^1] : Undefined.WithHint("No last item, sequence was empty.");
    }

    private static object? ToFloat(object? value, Arguments args)
    {
        args.Check(1, "default");
        var fallback = args.Get(0, "default", 0.0);
        return value switch
        {
            bool or long or double => PyOps.ToDouble(value),
            string s when TryParsePythonFloat(s, out var parsed) => parsed,
            _ => fallback,
        };
    }

    private static bool TryParsePythonFloat(string s, out double value)
    {
        var text = PyText.Strip(s).Replace("_", "", StringComparison.Ordinal).ToLowerInvariant();
        switch (text)
        {
            case "inf" or "+inf" or "infinity" or "+infinity":
                value = double.PositiveInfinity;
                return true;
            case "-inf" or "-infinity":
                value = double.NegativeInfinity;
                return true;
            case "nan" or "+nan" or "-nan":
                value = double.NaN;
                return true;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    private static object? ToInt(object? value, Arguments args)
    {
        args.Check(2, "default", "base");
        var fallback = args.Get(0, "default", 0L);
        var numberBase = RequireInt(args.Get(1, "base", 10L), "int");
        switch (value)
        {
            case bool or long:
                return PyOps.ToLong(value);
            case double d:
                return double.IsFinite(d) ? (long)Math.Truncate(d) : fallback;
            case string s:
                if (TryParsePythonInt(s, numberBase, out var parsed))
                {
                    return parsed;
                }

                return TryParsePythonFloat(s, out var asFloat) && double.IsFinite(asFloat) ? (long)Math.Truncate(asFloat) : fallback;
            default:
                return fallback;
        }
    }

    /// <summary>Python's <c>int(text, base)</c> for bases 0 and 2..36.</summary>
    private static bool TryParsePythonInt(string s, long numberBase, out long value)
    {
        value = 0;
        var text = PyText.Strip(s).Replace("_", "", StringComparison.Ordinal).ToLowerInvariant();
        var negative = false;
        if (text.StartsWith('-') || text.StartsWith('+'))
        {
            negative = text[0] == '-';
            text = text[1..];
        }

        if (numberBase is 0 or 16 && text.StartsWith("0x", StringComparison.Ordinal))
        {
            (numberBase, text) = (16, text[2..]);
        }
        else if (numberBase is 0 or 8 && text.StartsWith("0o", StringComparison.Ordinal))
        {
            (numberBase, text) = (8, text[2..]);
        }
        else if (numberBase is 0 or 2 && text.StartsWith("0b", StringComparison.Ordinal))
        {
            (numberBase, text) = (2, text[2..]);
        }
        else if (numberBase == 0)
        {
            numberBase = 10;
        }

        if (text.Length == 0 || numberBase is < 2 or > 36)
        {
            return false;
        }

        try
        {
            foreach (var c in text)
            {
                var digit = c switch
                {
                    >= '0' and <= '9' => c - '0',
                    >= 'a' and <= 'z' => c - 'a' + 10,
                    _ => 99,
                };
                if (digit >= numberBase)
                {
                    return false;
                }

                value = checked((value * numberBase) + digit);
            }
        }
        catch (OverflowException)
        {
            return false;
        }

        value = negative ? -value : value;
        return true;
    }

    private static string Format(object? value, Arguments args)
    {
        if (args.Positional.Count > 0 && args.Keyword.Count > 0)
        {
            throw new TemplateRuntimeError("can't handle positional and keyword arguments at the same time");
        }

        object? formatArgs = args.Keyword.Count > 0
            ? new Dictionary<string, object?>(args.Keyword, StringComparer.Ordinal)
            : args.Positional.ToArray();
        return PyFormat.Percent(PyRepr.Str(value), formatArgs);
    }

    /// <summary>jinja2's <c>indent(width=4, first=False, blank=False)</c>.</summary>
    private static string Indent(object? value, Arguments args)
    {
        args.Check(3, "width", "first", "blank");
        var widthArg = args.Get(0, "width", 4L);
        var indentation = widthArg is string text ? text : new string(' ', (int)RequireInt(widthArg, "indent"));
        var first = PyOps.Truthy(args.Get(1, "first", false));
        var blank = PyOps.Truthy(args.Get(2, "blank", false));
        var s = PyRepr.Str(value) + "\n"; // jinja2 appends a newline so that splitlines keeps a trailing empty line
        var lines = PyText.SplitLines(s);
        string result;
        if (blank)
        {
            result = string.Join("\n" + indentation, lines);
        }
        else
        {
            var builder = new StringBuilder(lines[0]);
            for (var i = 1; i < lines.Count; i++)
            {
                builder.Append('\n');
                if (lines[i].Length > 0)
                {
                    builder.Append(indentation);
                }

                builder.Append(lines[i]);
            }

            result = builder.ToString();
        }

        return first ? indentation + result : result;
    }

    private static List<object?> Items(object? value) => value switch
    {
        Undefined => [],
        Dictionary<string, object?> dict => dict.Select(e => (object?)new object?[] { e.Key, e.Value }).ToList(),
        _ => throw new TemplateRuntimeError($"'{PyOps.TypeName(value)}' object has no attribute 'items'"),
    };

    /// <summary>
    /// jinja2's attribute getter for <c>attribute='a.b.0'</c>: each dotted part is an item lookup (integer parts
    /// index sequences).
    /// </summary>
    private static Func<object?, object?> AttributeGetter(object? attribute, object? defaultValue = null, bool hasDefault = false)
    {
        var parts = attribute switch
        {
            string s => s.Split('.'),
            long l => [l.ToString(CultureInfo.InvariantCulture)],
            _ => throw new TemplateRuntimeError("attribute must be a string"),
        };
        return item =>
        {
            foreach (var part in parts)
            {
                object? key = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var index) ? index : part;
                item = PyOps.GetItem(item, key);
            }

            return hasDefault && item is Undefined ? defaultValue : item;
        };
    }

    private static string Join(object? value, Arguments args)
    {
        args.Check(2, "d", "attribute");
        var separator = PyRepr.Str(args.Get(0, "d", ""));
        var items = PyOps.Iterate(value);
        if (args.TryGet(1, "attribute", out var attribute) && attribute is not null)
        {
            var getter = AttributeGetter(attribute);
            items = items.Select(getter).ToList();
        }

        return string.Join(separator, items.Select(PyRepr.Str));
    }

    private static List<object?> Map(Renderer renderer, object? value, Arguments args)
    {
        var items = PyOps.Iterate(value);
        if (args.Positional.Count == 0 && args.Keyword.ContainsKey("attribute"))
        {
            args.Check(0, "attribute", "default");
            var hasDefault = args.Keyword.TryGetValue("default", out var fallback);
            var getter = AttributeGetter(args.Keyword["attribute"], fallback, hasDefault);
            return items.Select(getter).ToList();
        }

        if (args.Positional.Count == 0 || args.Positional[0] is not string filterName)
        {
            throw new TemplateRuntimeError("map requires a filter name or attribute=...");
        }

        var rest = new Arguments(filterName, args.Positional.Skip(1).ToList(), args.Keyword);
        return items.Select(item => renderer.CallFilter(filterName, item, rest)).ToList();
    }

    private static List<object?> Select(Renderer renderer, object? value, Arguments args, bool byAttribute, bool keep)
    {
        var items = PyOps.Iterate(value);
        var offset = 0;
        Func<object?, object?> getter = item => item;
        if (byAttribute)
        {
            getter = AttributeGetter(args.Positional.Count > 0 ? args.Positional[0] : throw new TemplateRuntimeError("selectattr/rejectattr need an attribute name"));
            offset = 1;
        }

        Func<object?, bool> predicate;
        if (args.Positional.Count > offset)
        {
            var testName = args.Positional[offset] as string ?? throw new TemplateRuntimeError("the test name must be a string");
            var testArgs = new Arguments(testName, args.Positional.Skip(offset + 1).ToList(), args.Keyword);
            predicate = item => renderer.CallTest(testName, item, testArgs);
        }
        else
        {
            predicate = PyOps.Truthy;
        }

        return items.Where(item => predicate(getter(item)) == keep).ToList();
    }

    private static object Replace(object? value, Arguments args)
    {
        args.Check(3, "old", "new", "count");
        var text = PyRepr.Str(value);
        var count = args.Get(2, "count");
        return PyText.Replace(text, PyRepr.Str(args.Required(0, "old")), PyRepr.Str(args.Required(1, "new")),
            count is null ? -1 : RequireInt(count, "replace"));
    }

    private static object Reverse(object? value) => value switch
    {
        string s => string.Concat(PyText.CodePoints(s).Cast<string>().Reverse()),
        _ => PyOps.Iterate(value).Reverse().ToList(),
    };

    private static object Round(object? value, Arguments args)
    {
        args.Check(2, "precision", "method");
        var precision = (int)RequireInt(args.Get(0, "precision", 0L), "round");
        var method = args.Get(1, "method", "common") as string;
        if (!PyOps.IsNumber(value))
        {
            throw new TemplateRuntimeError($"type {PyOps.TypeName(value)} doesn't define __round__ method");
        }

        switch (method)
        {
            case "common":
                // Python's round(): integers stay integers; floats round half to even on the exact binary value.
                return value is double d ? PyFormat.Round(d, precision) : (object)PyOps.ToLong(value);
            case "ceil" or "floor":
                {
                    var scale = Math.Pow(10, precision);
                    var number = PyOps.ToDouble(value) * scale;
                    return (method == "ceil" ? Math.Ceiling(number) : Math.Floor(number)) / scale;
                }

            default:
                throw new TemplateRuntimeError("method must be common, ceil or floor");
        }
    }

    private static Func<object?, object?> SortKey(object? attribute, bool caseSensitive)
    {
        var getter = attribute is null ? (item => item) : AttributeGetter(attribute);
        return item =>
        {
            var key = getter(item);
            return !caseSensitive && key is string s ? s.ToLowerInvariant() : key;
        };
    }

    private static List<object?> Sort(object? value, Arguments args)
    {
        args.Check(3, "reverse", "case_sensitive", "attribute");
        var reverse = PyOps.Truthy(args.Get(0, "reverse", false));
        var key = SortKey(args.Get(2, "attribute"), PyOps.Truthy(args.Get(1, "case_sensitive", false)));
        var items = PyOps.Iterate(value).ToList();
        var keys = items.Select(key).ToList();
        var order = Enumerable.Range(0, items.Count).ToList();
        // A stable sort, as Python's; reverse keeps the order of equal elements, as Python's reverse=True does.
        var sorted = reverse
            ? order.OrderByDescending(i => keys[i], Comparer<object?>.Create((a, b) => PyOps.Compare(a, b, "<")))
            : order.OrderBy(i => keys[i], Comparer<object?>.Create((a, b) => PyOps.Compare(a, b, "<")));
        return sorted.Select(i => items[i]).ToList();
    }

    private static List<object?> DictSort(object? value, Arguments args)
    {
        args.Check(3, "case_sensitive", "by", "reverse");
        if (value is not Dictionary<string, object?> dict)
        {
            throw new TemplateRuntimeError("dictsort expects a dict");
        }

        var caseSensitive = PyOps.Truthy(args.Get(0, "case_sensitive", false));
        var byValue = args.Get(1, "by", "key") switch
        {
            "key" => false,
            "value" => true,
            _ => throw new TemplateRuntimeError("You can only sort by either \"key\" or \"value\""),
        };
        var reverse = PyOps.Truthy(args.Get(2, "reverse", false));
        var pairs = dict.Select(e => new object?[] { e.Key, e.Value }).ToList();
        object? Key(object?[] pair)
        {
            var key = pair[byValue ? 1 : 0];
            return !caseSensitive && key is string s ? s.ToLowerInvariant() : key;
        }

        var comparer = Comparer<object?>.Create((a, b) => PyOps.Compare(a, b, "<"));
        var sorted = reverse ? pairs.OrderByDescending(Key, comparer) : pairs.OrderBy(Key, comparer);
        return sorted.Cast<object?>().ToList();
    }

    private static object? MinMax(object? value, Arguments args, bool max)
    {
        args.Check(2, "case_sensitive", "attribute");
        var key = SortKey(args.Get(1, "attribute"), PyOps.Truthy(args.Get(0, "case_sensitive", false)));
        var items = PyOps.Iterate(value);
        if (items.Count == 0)
        {
            return Undefined.WithHint("No aggregated item, sequence was empty.");
        }

        var best = items[0];
        var bestKey = key(best);
        foreach (var item in items.Skip(1))
        {
            var itemKey = key(item);
            var order = PyOps.Compare(itemKey, bestKey, "<");
            if (max ? order > 0 && order != 2 : order < 0)
            {
                best = item;
                bestKey = itemKey;
            }
        }

        return best;
    }

    private static object? Sum(object? value, Arguments args)
    {
        args.Check(2, "attribute", "start");
        var total = args.Get(1, "start", 0L);
        var items = PyOps.Iterate(value);
        var attribute = args.Get(0, "attribute");
        var getter = attribute is null ? (item => item) : AttributeGetter(attribute);
        foreach (var item in items)
        {
            total = PyOps.Binary("+", total, getter(item));
        }

        return total;
    }

    /// <summary>jinja2's <c>title</c> filter: capitalises each word, words starting after whitespace, '-', and opening brackets.</summary>
    private static string Title(string value)
    {
        var builder = new StringBuilder(value.Length);
        var wordStart = true;
        foreach (var c in value)
        {
            var isSeparator = PyText.IsSpace(c) || c is '-' or '(' or '{' or '[' or '<';
            if (isSeparator)
            {
                builder.Append(c);
                wordStart = true;
            }
            else
            {
                builder.Append(wordStart ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
                wordStart = false;
            }
        }

        return builder.ToString();
    }

    /// <summary>Hugging Face's <c>tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)</c>.</summary>
    private static string ToJson(object? value, Arguments args)
    {
        args.Check(4, "ensure_ascii", "indent", "separators", "sort_keys");
        var ensureAscii = PyOps.Truthy(args.Get(0, "ensure_ascii", false));
        var indentArg = args.Get(1, "indent");
        string? indent = indentArg switch
        {
            null => null,
            string s => s,
            bool or long => new string(' ', (int)Math.Max(0, PyOps.ToLong(indentArg))),
            _ => throw new TemplateRuntimeError("tojson: indent must be an integer or a string"),
        };
        var (itemSeparator, keySeparator) = indent is null ? (", ", ": ") : (",", ": ");
        if (args.Get(2, "separators") is { } separators)
        {
            var parts = separators is object?[] or List<object?> ? (IReadOnlyList<object?>)separators : [];
            if (parts.Count != 2 || parts[0] is not string item || parts[1] is not string key)
            {
                throw new TemplateRuntimeError("tojson: separators must be a pair of strings");
            }

            (itemSeparator, keySeparator) = (item, key);
        }

        var sortKeys = PyOps.Truthy(args.Get(3, "sort_keys", false));
        return PyFormat.JsonDumps(value, ensureAscii, indent, itemSeparator, keySeparator, sortKeys);
    }

    private static List<object?> Unique(object? value, Arguments args)
    {
        args.Check(2, "case_sensitive", "attribute");
        var key = SortKey(args.Get(1, "attribute"), PyOps.Truthy(args.Get(0, "case_sensitive", false)));
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (var item in PyOps.Iterate(value))
        {
            var itemKey = key(item);
            if (!seen.Any(s => PyOps.Equal(s, itemKey)))
            {
                seen.Add(itemKey);
                result.Add(item);
            }
        }

        return result;
    }
}
