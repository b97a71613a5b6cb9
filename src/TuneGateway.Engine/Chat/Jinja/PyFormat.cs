using System.Globalization;
using System.Numerics;
using System.Text;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>Python's formatting functions that templates reach: <c>json.dumps</c>, <c>%</c>-formatting,
/// <c>strftime</c> and <c>round</c>.</summary>
internal static class PyFormat
{
    // ------------------------------------------------------------ json.dumps

    /// <summary>
    /// <c>json.dumps(value, ensure_ascii, indent, separators, sort_keys)</c>, which is what Hugging Face's
    /// <c>tojson</c> filter calls (with <c>ensure_ascii=False</c> by default).
    /// </summary>
    public static string JsonDumps(object? value, bool ensureAscii, string? indent, string itemSeparator, string keySeparator, bool sortKeys)
    {
        var builder = new StringBuilder();
        WriteJson(builder, value, ensureAscii, indent, itemSeparator, keySeparator, sortKeys, 0);
        return builder.ToString();
    }

    private static void WriteJson(
        StringBuilder builder, object? value, bool ensureAscii, string? indent, string itemSeparator, string keySeparator,
        bool sortKeys, int level)
    {
        if (level > PyOps.MaxNesting)
        {
            throw new TemplateRuntimeError("values nest too deeply to serialise as JSON");
        }

        switch (value)
        {
            case null:
                builder.Append("null");
                return;
            case bool b:
                builder.Append(b ? "true" : "false");
                return;
            case long l:
                builder.Append(l.ToString(CultureInfo.InvariantCulture));
                return;
            case double d:
                builder.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : PyRepr.FloatRepr(d));
                return;
            case string s:
                WriteJsonString(builder, s, ensureAscii);
                return;
            case List<object?> or object?[]:
                {
                    var items = (IReadOnlyList<object?>)value;
                    if (items.Count == 0)
                    {
                        builder.Append("[]");
                        return;
                    }

                    builder.Append('[');
                    for (var i = 0; i < items.Count; i++)
                    {
                        builder.Append(i == 0 ? "" : itemSeparator);
                        NewLine(builder, indent, level + 1);
                        WriteJson(builder, items[i], ensureAscii, indent, itemSeparator, keySeparator, sortKeys, level + 1);
                    }

                    NewLine(builder, indent, level);
                    builder.Append(']');
                    return;
                }

            case Dictionary<string, object?> dict:
                {
                    if (dict.Count == 0)
                    {
                        builder.Append("{}");
                        return;
                    }

                    IEnumerable<KeyValuePair<string, object?>> entries = dict;
                    if (sortKeys)
                    {
                        entries = entries.OrderBy(e => e.Key, Comparer<string>.Create(PyText.CompareCodePoints));
                    }

                    builder.Append('{');
                    var first = true;
                    foreach (var (key, item) in entries)
                    {
                        builder.Append(first ? "" : itemSeparator);
                        first = false;
                        NewLine(builder, indent, level + 1);
                        WriteJsonString(builder, key, ensureAscii);
                        builder.Append(keySeparator);
                        WriteJson(builder, item, ensureAscii, indent, itemSeparator, keySeparator, sortKeys, level + 1);
                    }

                    NewLine(builder, indent, level);
                    builder.Append('}');
                    return;
                }

            default:
                throw new TemplateRuntimeError($"Object of type {PyOps.TypeName(value)} is not JSON serializable");
        }
    }

    private static void NewLine(StringBuilder builder, string? indent, int level)
    {
        if (indent is null)
        {
            return;
        }

        builder.Append('\n');
        for (var i = 0; i < level; i++)
        {
            builder.Append(indent);
        }
    }

    private static void WriteJsonString(StringBuilder builder, string s, bool ensureAscii)
    {
        builder.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': builder.Append("\\\""); break;
                case '\\': builder.Append("\\\\"); break;
                case '\n': builder.Append("\\n"); break;
                case '\r': builder.Append("\\r"); break;
                case '\t': builder.Append("\\t"); break;
                case '\b': builder.Append("\\b"); break;
                case '\f': builder.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7e))
                    {
                        builder.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        builder.Append(c);
                    }

                    break;
            }
        }

        builder.Append('"');
    }

    // ------------------------------------------------------------ printf-style formatting

    /// <summary>Python's <c>format % args</c> (and jinja2's <c>format</c> filter).</summary>
    public static string Percent(string format, object? args)
    {
        IReadOnlyList<object?> values = args is object?[] tuple ? tuple : [args];
        var mapping = args as Dictionary<string, object?>;
        var builder = new StringBuilder();
        var next = 0;
        var i = 0;
        while (i < format.Length)
        {
            var c = format[i++];
            if (c != '%')
            {
                builder.Append(c);
                continue;
            }

            if (i >= format.Length)
            {
                throw new TemplateRuntimeError("incomplete format");
            }

            object? value = null;
            var haveValue = false;
            if (format[i] == '(')
            {
                var close = format.IndexOf(')', i);
                if (close < 0 || mapping is null)
                {
                    throw new TemplateRuntimeError("format requires a mapping");
                }

                var key = format[(i + 1)..close];
                value = mapping.TryGetValue(key, out var found) ? found : throw new TemplateRuntimeError($"KeyError: '{key}'");
                haveValue = true;
                i = close + 1;
            }

            var flags = "";
            while (i < format.Length && format[i] is '-' or '+' or ' ' or '#' or '0')
            {
                flags += format[i++];
            }

            var width = ReadNumber(format, ref i);
            int? precision = null;
            if (i < format.Length && format[i] == '.')
            {
                i++;
                precision = ReadNumber(format, ref i) ?? 0;
            }

            if (i >= format.Length)
            {
                throw new TemplateRuntimeError("incomplete format");
            }

            var type = format[i++];
            if (type == '%')
            {
                builder.Append('%');
                continue;
            }

            if (!haveValue)
            {
                if (next >= values.Count)
                {
                    throw new TemplateRuntimeError("not enough arguments for format string");
                }

                value = values[next++];
            }

            var text = type switch
            {
                's' => PyRepr.Str(value),
                'r' or 'a' => PyRepr.Repr(value),
                'd' or 'i' or 'u' => FormatInteger(value, 10, false, flags),
                'x' => FormatInteger(value, 16, false, flags),
                'X' => FormatInteger(value, 16, true, flags),
                'o' => FormatInteger(value, 8, false, flags),
                'f' or 'F' => FormatFloat(value, "F", precision ?? 6, flags),
                'e' or 'E' => FormatExponent(value, precision ?? 6, type == 'E', flags),
                'g' or 'G' => FormatFloat(value, "G", precision ?? 6, flags),
                'c' => value is string ch ? ch : char.ConvertFromUtf32((int)PyOps.ToLong(value)),
                _ => throw new TemplateRuntimeError($"unsupported format character '{type}'"),
            };
            if (type is 's' or 'r' or 'a' && precision is { } maxLength && text.Length > maxLength)
            {
                text = text[..maxLength];
            }

            builder.Append(Pad(text, width, flags, numeric: type is not ('s' or 'r' or 'a' or 'c')));
        }

        if (mapping is null && next < values.Count)
        {
            throw new TemplateRuntimeError("not all arguments converted during string formatting");
        }

        return builder.ToString();
    }

    private static int? ReadNumber(string format, ref int i)
    {
        var start = i;
        while (i < format.Length && char.IsAsciiDigit(format[i]))
        {
            i++;
        }

        return i > start ? int.Parse(format.AsSpan(start, i - start), CultureInfo.InvariantCulture) : null;
    }

    private static string Sign(bool negative, string flags) =>
        negative ? "-" : flags.Contains('+', StringComparison.Ordinal) ? "+" : flags.Contains(' ', StringComparison.Ordinal) ? " " : "";

    private static string FormatInteger(object? value, int radix, bool upper, string flags)
    {
        long number = value switch
        {
            bool or long => PyOps.ToLong(value),
            double d => (long)Math.Truncate(d),
            _ => throw new TemplateRuntimeError($"%{(radix == 10 ? "d" : "x")} format: a real number is required, not {PyOps.TypeName(value)}"),
        };
        var magnitude = BigInteger.Abs(number);
        var digits = radix switch
        {
            16 => magnitude.ToString(upper ? "X" : "x", CultureInfo.InvariantCulture).TrimStart('0'),
            8 => ToOctal(magnitude),
            _ => magnitude.ToString(CultureInfo.InvariantCulture),
        };
        if (digits.Length == 0)
        {
            digits = "0";
        }

        var prefix = flags.Contains('#', StringComparison.Ordinal) && radix != 10 ? (radix == 16 ? (upper ? "0X" : "0x") : "0o") : "";
        return Sign(number < 0, flags) + prefix + digits;
    }

    private static string ToOctal(BigInteger value)
    {
        if (value.IsZero)
        {
            return "0";
        }

        var builder = new StringBuilder();
        while (value > 0)
        {
            builder.Insert(0, (char)('0' + (int)(value % 8)));
            value /= 8;
        }

        return builder.ToString();
    }

    private static double RequireReal(object? value) => PyOps.IsNumber(value)
        ? PyOps.ToDouble(value)
        : throw new TemplateRuntimeError($"must be real number, not {PyOps.TypeName(value)}");

    private static string FormatFloat(object? value, string style, int precision, string flags)
    {
        var number = RequireReal(value);
        var text = Math.Abs(number).ToString(style + precision.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return Sign(number < 0 || double.IsNegative(number) && number == 0, flags) + text;
    }

    private static string FormatExponent(object? value, int precision, bool upper, string flags)
    {
        var number = RequireReal(value);
        var text = Math.Abs(number).ToString((upper ? "E" : "e") + precision.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        // .NET writes three exponent digits (1.5e+003); Python writes at least two.
        var at = text.IndexOfAny(['e', 'E']);
        var exponent = int.Parse(text[(at + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        text = text[..(at + 1)] + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
        return Sign(number < 0, flags) + text;
    }

    private static string Pad(string text, int? width, string flags, bool numeric)
    {
        if (width is not { } w || text.Length >= w)
        {
            return text;
        }

        if (flags.Contains('-', StringComparison.Ordinal))
        {
            return text.PadRight(w);
        }

        if (numeric && flags.Contains('0', StringComparison.Ordinal))
        {
            var signLength = text.Length > 0 && text[0] is '-' or '+' or ' ' ? 1 : 0;
            return text[..signLength] + new string('0', w - text.Length) + text[signLength..];
        }

        return text.PadLeft(w);
    }

    // ------------------------------------------------------------ strftime

    private static readonly string[] DayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    private static readonly string[] MonthNames =
    [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December",
    ];

    /// <summary>
    /// C <c>strftime</c> in the C locale, as Python's <c>datetime.strftime</c> on Linux (glibc) behaves, for a
    /// naive local time: <c>%Z</c> and <c>%z</c> are empty, <c>%-d</c> drops padding.
    /// </summary>
    public static string Strftime(DateTime time, string format)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            var c = format[i];
            if (c != '%' || i + 1 >= format.Length)
            {
                builder.Append(c);
                continue;
            }

            var noPad = false;
            var code = format[++i];
            if (code == '-' && i + 1 < format.Length)
            {
                noPad = true;
                code = format[++i];
            }

            string Number(int value, int digits) =>
                noPad ? value.ToString(CultureInfo.InvariantCulture) : value.ToString(new string('0', digits), CultureInfo.InvariantCulture);

            var hour12 = time.Hour % 12 == 0 ? 12 : time.Hour % 12;
            builder.Append(code switch
            {
                'a' => DayNames[(int)time.DayOfWeek][..3],
                'A' => DayNames[(int)time.DayOfWeek],
                'b' or 'h' => MonthNames[time.Month - 1][..3],
                'B' => MonthNames[time.Month - 1],
                'd' => Number(time.Day, 2),
                'e' => noPad ? time.Day.ToString(CultureInfo.InvariantCulture) : time.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'm' => Number(time.Month, 2),
                'y' => Number(time.Year % 100, 2),
                'Y' => time.Year.ToString(CultureInfo.InvariantCulture),
                'H' => Number(time.Hour, 2),
                'I' => Number(hour12, 2),
                'M' => Number(time.Minute, 2),
                'S' => Number(time.Second, 2),
                'f' => (time.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", CultureInfo.InvariantCulture),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'j' => Number(time.DayOfYear, 3),
                'w' => ((int)time.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'u' => (time.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)time.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'F' => time.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                'D' => time.ToString("MM/dd/yy", CultureInfo.InvariantCulture),
                'T' => time.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                'R' => time.ToString("HH:mm", CultureInfo.InvariantCulture),
                'c' => $"{DayNames[(int)time.DayOfWeek][..3]} {MonthNames[time.Month - 1][..3]} {time.Day,2} {time:HH:mm:ss} {time.Year}",
                'x' => time.ToString("MM/dd/yy", CultureInfo.InvariantCulture),
                'X' => time.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                'Z' or 'z' => "",
                'n' => "\n",
                't' => "\t",
                '%' => "%",
                _ => "%" + (noPad ? "-" : "") + code,
            });
        }

        return builder.ToString();
    }

    // ------------------------------------------------------------ round

    /// <summary>
    /// Python's <c>round(value, digits)</c> on a float: correctly rounded from the exact binary value, ties to even.
    /// </summary>
    public static double Round(double value, int digits)
    {
        if (double.IsNaN(value) || double.IsInfinity(value) || value == 0)
        {
            return value;
        }

        // value = mantissa * 2^exponent exactly.
        var bits = BitConverter.DoubleToInt64Bits(value);
        var negative = bits < 0;
        var exponentBits = (int)((bits >> 52) & 0x7FF);
        var fraction = bits & 0xFFFFFFFFFFFFFL;
        BigInteger mantissa = exponentBits == 0 ? fraction : fraction | (1L << 52);
        var exponent = (exponentBits == 0 ? 1 : exponentBits) - 1075;

        // Scaled = value * 10^digits as numerator / denominator.
        BigInteger numerator = mantissa;
        BigInteger denominator = BigInteger.One;
        if (exponent >= 0)
        {
            numerator <<= exponent;
        }
        else
        {
            denominator <<= -exponent;
        }

        if (digits >= 0)
        {
            numerator *= BigInteger.Pow(10, digits);
        }
        else
        {
            denominator *= BigInteger.Pow(10, -digits);
        }

        var quotient = BigInteger.DivRem(numerator, denominator, out var remainder);
        var twice = remainder * 2;
        if (twice > denominator || (twice == denominator && !quotient.IsEven))
        {
            quotient += 1;
        }

        var text = (negative ? "-" : "") + quotient.ToString(CultureInfo.InvariantCulture) + "e" + (-digits).ToString(CultureInfo.InvariantCulture);
        return double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
    }
}
