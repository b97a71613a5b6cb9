using System.Globalization;
using System.Text;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>
/// Python's string semantics where they differ from .NET's: strings are sequences of code points (not UTF-16
/// units), whitespace is Python's <c>str.isspace()</c>, and the methods behave like <c>str.split</c>,
/// <c>str.title</c>, ... do.
/// </summary>
internal static class PyText
{
    /// <summary>Python's <c>str.isspace()</c> for one character.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    private static bool HasSurrogates(string s) => s.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0;

    /// <summary><c>len(s)</c>: the number of code points.</summary>
    public static int CodePointCount(string s)
    {
        if (!HasSurrogates(s))
        {
            return s.Length;
        }

        var count = 0;
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                i++;
            }

            count++;
        }

        return count;
    }

    /// <summary>The code points of <paramref name="s"/>, each as a string.</summary>
    public static List<object?> CodePoints(string s)
    {
        var result = new List<object?>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                result.Add(s.Substring(i, 2));
                i++;
            }
            else
            {
                result.Add(s[i].ToString());
            }
        }

        return result;
    }

    /// <summary><c>s[index]</c> for a non-negative code point index in range.</summary>
    public static string CodePointAt(string s, int index) =>
        HasSurrogates(s) ? (string)CodePoints(s)[index]! : s[index].ToString();

    /// <summary>Orders strings by code point, as Python does.</summary>
    public static int CompareCodePoints(string a, string b)
    {
        var length = Math.Min(a.Length, b.Length);
        for (var i = 0; i < length; i++)
        {
            if (a[i] != b[i])
            {
                var ca = char.IsSurrogate(a[i]) ? char.ConvertToUtf32(a, i) : a[i];
                var cb = char.IsSurrogate(b[i]) ? char.ConvertToUtf32(b, i) : b[i];
                return ca.CompareTo(cb);
            }
        }

        return a.Length.CompareTo(b.Length);
    }

    public static string Strip(string s, string? chars = null) => RStrip(LStrip(s, chars), chars);

    public static string LStrip(string s, string? chars = null)
    {
        var start = 0;
        while (start < s.Length && (chars is null ? IsSpace(s[start]) : chars.Contains(s[start], StringComparison.Ordinal)))
        {
            start++;
        }

        return s[start..];
    }

    public static string RStrip(string s, string? chars = null)
    {
        var end = s.Length;
        while (end > 0 && (chars is null ? IsSpace(s[end - 1]) : chars.Contains(s[end - 1], StringComparison.Ordinal)))
        {
            end--;
        }

        return s[..end];
    }

    /// <summary><c>str.split(sep=None, maxsplit=-1)</c>.</summary>
    public static List<object?> Split(string s, string? separator, long maxSplit)
    {
        var parts = new List<object?>();
        if (separator is null)
        {
            var i = 0;
            while (true)
            {
                while (i < s.Length && IsSpace(s[i]))
                {
                    i++;
                }

                if (i >= s.Length)
                {
                    break;
                }

                if (maxSplit >= 0 && parts.Count >= maxSplit)
                {
                    parts.Add(RStrip(s[i..]));
                    break;
                }

                var start = i;
                while (i < s.Length && !IsSpace(s[i]))
                {
                    i++;
                }

                parts.Add(s[start..i]);
            }

            return parts;
        }

        if (separator.Length == 0)
        {
            throw new TemplateRuntimeError("empty separator");
        }

        var position = 0;
        while (maxSplit < 0 || parts.Count < maxSplit)
        {
            var found = s.IndexOf(separator, position, StringComparison.Ordinal);
            if (found < 0)
            {
                break;
            }

            parts.Add(s[position..found]);
            position = found + separator.Length;
        }

        parts.Add(s[position..]);
        return parts;
    }

    /// <summary><c>str.rsplit(sep, maxsplit)</c>.</summary>
    public static List<object?> RSplit(string s, string? separator, long maxSplit)
    {
        if (maxSplit < 0)
        {
            return Split(s, separator, maxSplit);
        }

        if (separator is null)
        {
            var parts = new List<object?>();
            var end = s.Length;
            while (true)
            {
                while (end > 0 && IsSpace(s[end - 1]))
                {
                    end--;
                }

                if (end == 0)
                {
                    break;
                }

                if (parts.Count >= maxSplit)
                {
                    parts.Add(LStrip(s[..end]));
                    break;
                }

                var start = end;
                while (start > 0 && !IsSpace(s[start - 1]))
                {
                    start--;
                }

                parts.Add(s[start..end]);
                end = start;
            }

            parts.Reverse();
            return parts;
        }

        if (separator.Length == 0)
        {
            throw new TemplateRuntimeError("empty separator");
        }

        var result = new List<object?>();
        var stop = s.Length;
        while (result.Count < maxSplit)
        {
            var found = stop - separator.Length < 0 ? -1 : s.LastIndexOf(separator, stop - 1, stop, StringComparison.Ordinal);
            if (found < 0 || found + separator.Length > stop)
            {
                break;
            }

            result.Add(s[(found + separator.Length)..stop]);
            stop = found;
        }

        result.Add(s[..stop]);
        result.Reverse();
        return result;
    }

    /// <summary><c>str.splitlines(keepends=False)</c>.</summary>
    public static List<string> SplitLines(string s, bool keepEnds = false)
    {
        var lines = new List<string>();
        var start = 0;
        var i = 0;
        while (i < s.Length)
        {
            var c = s[i];
            var breakLength = c switch
            {
                '\r' when i + 1 < s.Length && s[i + 1] == '\n' => 2,
                '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029' => 1,
                _ => 0,
            };
            if (breakLength == 0)
            {
                i++;
                continue;
            }

            lines.Add(keepEnds ? s[start..(i + breakLength)] : s[start..i]);
            i += breakLength;
            start = i;
        }

        if (start < s.Length)
        {
            lines.Add(s[start..]);
        }

        return lines;
    }

    /// <summary><c>str.replace(old, new, count=-1)</c>.</summary>
    public static string Replace(string s, string oldValue, string newValue, long count = -1)
    {
        if (count < 0 && oldValue.Length > 0)
        {
            return s.Replace(oldValue, newValue, StringComparison.Ordinal);
        }

        var builder = new StringBuilder();
        if (oldValue.Length == 0)
        {
            var points = CodePoints(s);
            var done = 0L;
            foreach (var point in points)
            {
                if (count < 0 || done < count)
                {
                    builder.Append(newValue);
                    done++;
                }

                builder.Append((string)point!);
            }

            if (count < 0 || done < count)
            {
                builder.Append(newValue);
            }

            return builder.ToString();
        }

        var position = 0;
        var replaced = 0L;
        while (replaced < count)
        {
            var found = s.IndexOf(oldValue, position, StringComparison.Ordinal);
            if (found < 0)
            {
                break;
            }

            builder.Append(s, position, found - position).Append(newValue);
            position = found + oldValue.Length;
            replaced++;
        }

        return builder.Append(s, position, s.Length - position).ToString();
    }

    /// <summary><c>str.count(sub)</c>: non-overlapping occurrences.</summary>
    public static long Count(string s, string sub)
    {
        if (sub.Length == 0)
        {
            return CodePointCount(s) + 1;
        }

        var count = 0L;
        var position = 0;
        while ((position = s.IndexOf(sub, position, StringComparison.Ordinal)) >= 0)
        {
            count++;
            position += sub.Length;
        }

        return count;
    }

    /// <summary>A code-unit index turned into a code-point index (for <c>find</c>).</summary>
    public static long ToCodePointIndex(string s, int unitIndex) =>
        unitIndex < 0 ? -1 : CodePointCount(s[..unitIndex]);

    private static bool IsCased(char c)
    {
        var category = char.GetUnicodeCategory(c);
        return category is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;
    }

    /// <summary><c>str.title()</c>: upper-cases a cased character that follows an uncased one, lower-cases the rest.</summary>
    public static string Title(string s)
    {
        var builder = new StringBuilder(s.Length);
        var previousCased = false;
        foreach (var c in s)
        {
            builder.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = IsCased(c);
        }

        return builder.ToString();
    }

    /// <summary><c>str.capitalize()</c>: first character upper case, the rest lower case.</summary>
    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary><c>str.swapcase()</c>.</summary>
    public static string SwapCase(string s)
    {
        var builder = new StringBuilder(s.Length);
        foreach (var c in s)
        {
            builder.Append(char.IsUpper(c) ? char.ToLowerInvariant(c) : char.IsLower(c) ? char.ToUpperInvariant(c) : c);
        }

        return builder.ToString();
    }

    /// <summary>Python's <c>str.isdigit()</c> and friends over a whole (non-empty) string.</summary>
    public static bool All(string s, Func<Rune, bool> predicate)
    {
        if (s.Length == 0)
        {
            return false;
        }

        foreach (var rune in s.EnumerateRunes())
        {
            if (!predicate(rune))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary><c>str.isupper()</c> / <c>str.islower()</c>: at least one cased character, and all cased ones in that case.</summary>
    public static bool IsCase(string s, bool upper)
    {
        var anyCased = false;
        foreach (var c in s)
        {
            if (char.IsUpper(c))
            {
                if (!upper)
                {
                    return false;
                }

                anyCased = true;
            }
            else if (char.IsLower(c))
            {
                if (upper)
                {
                    return false;
                }

                anyCased = true;
            }
        }

        return anyCased;
    }
}
