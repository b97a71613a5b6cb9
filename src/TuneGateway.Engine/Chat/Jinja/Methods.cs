using System.Text;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>The Python methods of strings, dicts and lists that templates call, e.g. <c>content.strip()</c>.</summary>
internal static class Methods
{
    /// <summary>A bound method <paramref name="name"/> of <paramref name="target"/>.</summary>
    public static BuiltinFunction Bind(object target, string name) => target switch
    {
        string s => new BuiltinFunction($"str.{name}", (_, args) => CallString(s, name, args)),
        Dictionary<string, object?> d => new BuiltinFunction($"dict.{name}", (_, args) => CallDict(d, name, args)),
        _ => new BuiltinFunction($"{PyOps.TypeName(target)}.{name}", (_, args) => CallList((IReadOnlyList<object?>)target, name, args)),
    };

    private static string RequireString(object? value, string function, string what = "argument") => value switch
    {
        string s => s,
        Undefined u => throw u.Fail(),
        _ => throw new TemplateRuntimeError($"{function}() {what} must be str, not {PyOps.TypeName(value)}"),
    };

    private static string? OptionalString(object? value, string function) =>
        value is null ? null : RequireString(value, function);

    private static long RequireInt(object? value, string function) => PyOps.IsInteger(value)
        ? PyOps.ToLong(value)
        : throw new TemplateRuntimeError($"{function}() argument must be int, not {PyOps.TypeName(value)}");

    private static object? CallString(string s, string name, Arguments a)
    {
        var fn = $"str.{name}";
        switch (name)
        {
            case "strip":
                return PyText.Strip(s, OptionalString(a.Check(1, "chars").Get(0, "chars"), fn));
            case "lstrip":
                return PyText.LStrip(s, OptionalString(a.Check(1, "chars").Get(0, "chars"), fn));
            case "rstrip":
                return PyText.RStrip(s, OptionalString(a.Check(1, "chars").Get(0, "chars"), fn));
            case "split":
                a.Check(2, "sep", "maxsplit");
                return PyText.Split(s, OptionalString(a.Get(0, "sep"), fn), RequireInt(a.Get(1, "maxsplit", -1L), fn));
            case "rsplit":
                a.Check(2, "sep", "maxsplit");
                return PyText.RSplit(s, OptionalString(a.Get(0, "sep"), fn), RequireInt(a.Get(1, "maxsplit", -1L), fn));
            case "splitlines":
                return PyText.SplitLines(s, PyOps.Truthy(a.Check(1, "keepends").Get(0, "keepends", false))).Cast<object?>().ToList();
            case "startswith" or "endswith":
                {
                    var prefixes = a.Check(1).Required(0, "prefix") switch
                    {
                        string one => [one],
                        object?[] tuple => tuple.Select(p => RequireString(p, fn)).ToArray(),
                        List<object?> list => list.Select(p => RequireString(p, fn)).ToArray(),
                        var other => throw new TemplateRuntimeError(
                            $"{fn} first arg must be str or a tuple of str, not {PyOps.TypeName(other)}"),
                    };
                    return name == "startswith"
                        ? prefixes.Any(p => s.StartsWith(p, StringComparison.Ordinal))
                        : prefixes.Any(p => s.EndsWith(p, StringComparison.Ordinal));
                }

            case "upper":
                a.Check(0);
                return s.ToUpperInvariant();
            case "lower" or "casefold":
                a.Check(0);
                return s.ToLowerInvariant();
            case "swapcase":
                a.Check(0);
                return PyText.SwapCase(s);
            case "title":
                a.Check(0);
                return PyText.Title(s);
            case "capitalize":
                a.Check(0);
                return PyText.Capitalize(s);
            case "replace":
                a.Check(3, "count");
                return PyText.Replace(s, RequireString(a.Required(0, "old"), fn), RequireString(a.Required(1, "new"), fn),
                    RequireInt(a.Get(2, "count", -1L), fn));
            case "find" or "index":
                {
                    var found = s.IndexOf(RequireString(a.Check(1).Required(0, "sub"), fn), StringComparison.Ordinal);
                    return found < 0 && name == "index"
                        ? throw new TemplateRuntimeError("substring not found")
                        : PyText.ToCodePointIndex(s, found);
                }

            case "rfind" or "rindex":
                {
                    var found = s.LastIndexOf(RequireString(a.Check(1).Required(0, "sub"), fn), StringComparison.Ordinal);
                    return found < 0 && name == "rindex"
                        ? throw new TemplateRuntimeError("substring not found")
                        : PyText.ToCodePointIndex(s, found);
                }

            case "count":
                return PyText.Count(s, RequireString(a.Check(1).Required(0, "sub"), fn));
            case "join":
                {
                    var parts = PyOps.Iterate(a.Check(1).Required(0, "iterable"));
                    var builder = new StringBuilder();
                    for (var i = 0; i < parts.Count; i++)
                    {
                        if (i > 0)
                        {
                            builder.Append(s);
                        }

                        builder.Append(parts[i] is string part
                            ? part
                            : throw new TemplateRuntimeError(
                                $"sequence item {i}: expected str instance, {PyOps.TypeName(parts[i])} found"));
                    }

                    return builder.ToString();
                }

            case "isdigit" or "isdecimal" or "isnumeric":
                a.Check(0);
                return PyText.All(s, r => System.Globalization.CharUnicodeInfo.GetUnicodeCategory(r.Value) == System.Globalization.UnicodeCategory.DecimalDigitNumber);
            case "isalpha":
                a.Check(0);
                return PyText.All(s, Rune.IsLetter);
            case "isalnum":
                a.Check(0);
                return PyText.All(s, Rune.IsLetterOrDigit);
            case "isspace":
                a.Check(0);
                return PyText.All(s, r => r.IsBmp && PyText.IsSpace((char)r.Value));
            case "isupper":
                a.Check(0);
                return PyText.IsCase(s, upper: true);
            case "islower":
                a.Check(0);
                return PyText.IsCase(s, upper: false);
            case "zfill":
                {
                    var width = (int)RequireInt(a.Check(1).Required(0, "width"), fn);
                    if (s.Length >= width)
                    {
                        return s;
                    }

                    var signLength = s.Length > 0 && s[0] is '-' or '+' ? 1 : 0;
                    return s[..signLength] + new string('0', width - s.Length) + s[signLength..];
                }

            case "center" or "ljust" or "rjust":
                {
                    a.Check(2);
                    var width = (int)RequireInt(a.Required(0, "width"), fn);
                    var fill = RequireString(a.Get(1, "fillchar", " "), fn);
                    if (fill.Length != 1)
                    {
                        throw new TemplateRuntimeError("The fill character must be exactly one character long");
                    }

                    var padding = width - PyText.CodePointCount(s);
                    if (padding <= 0)
                    {
                        return s;
                    }

                    return name switch
                    {
                        "ljust" => s + new string(fill[0], padding),
                        "rjust" => new string(fill[0], padding) + s,
                        // CPython: left = padding / 2 + (padding & width & 1).
                        _ => new string(fill[0], (padding / 2) + (padding & width & 1)) + s
                             + new string(fill[0], padding - ((padding / 2) + (padding & width & 1))),
                    };
                }

            case "removeprefix":
                {
                    var prefix = RequireString(a.Check(1).Required(0, "prefix"), fn);
                    return s.StartsWith(prefix, StringComparison.Ordinal) ? s[prefix.Length..] : s;
                }

            case "removesuffix":
                {
                    var suffix = RequireString(a.Check(1).Required(0, "suffix"), fn);
                    return suffix.Length > 0 && s.EndsWith(suffix, StringComparison.Ordinal) ? s[..^suffix.Length] : s;
                }

            case "partition" or "rpartition":
                {
                    var separator = RequireString(a.Check(1).Required(0, "sep"), fn);
                    var at = name == "partition"
                        ? s.IndexOf(separator, StringComparison.Ordinal)
                        : s.LastIndexOf(separator, StringComparison.Ordinal);
                    if (at < 0)
                    {
                        return name == "partition" ? new object?[] { s, "", "" } : new object?[] { "", "", s };
                    }

                    return new object?[] { s[..at], separator, s[(at + separator.Length)..] };
                }
        }

        throw new TemplateRuntimeError($"'str' object has no attribute '{name}'");
    }

    private static object? CallDict(Dictionary<string, object?> d, string name, Arguments a)
    {
        switch (name)
        {
            case "get":
                {
                    a.Check(2);
                    var key = a.Required(0, "key");
                    return key is string k && d.TryGetValue(k, out var value) ? value : a.Get(1, "default");
                }

            case "items":
                a.Check(0);
                return d.Select(e => (object?)new object?[] { e.Key, e.Value }).ToList();
            case "keys":
                a.Check(0);
                return d.Keys.Cast<object?>().ToList();
            case "values":
                a.Check(0);
                return d.Values.ToList();
            case "copy":
                a.Check(0);
                return new Dictionary<string, object?>(d, StringComparer.Ordinal);
        }

        throw new TemplateRuntimeError($"'dict' object has no attribute '{name}'");
    }

    private static object? CallList(IReadOnlyList<object?> list, string name, Arguments a)
    {
        switch (name)
        {
            case "count":
                {
                    var item = a.Check(1).Required(0, "value");
                    return (long)list.Count(element => PyOps.Equal(element, item));
                }

            case "index":
                {
                    var item = a.Check(1).Required(0, "value");
                    for (var i = 0; i < list.Count; i++)
                    {
                        if (PyOps.Equal(list[i], item))
                        {
                            return (long)i;
                        }
                    }

                    throw new TemplateRuntimeError($"{PyRepr.Repr(item)} is not in list");
                }

            case "copy":
                a.Check(0);
                return list.ToList();
        }

        throw new TemplateRuntimeError($"'{PyOps.TypeName(list)}' object has no attribute '{name}'");
    }
}
