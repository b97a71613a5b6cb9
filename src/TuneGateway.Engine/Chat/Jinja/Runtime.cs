using System.Text;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>
/// jinja2's default <c>Undefined</c>: what a missing variable, key, attribute or index evaluates to. It prints as
/// the empty string, is falsy, iterates as empty and has length 0; any other use (attribute or item access,
/// arithmetic, ordering, calling it, serialising it) fails with a message naming what was missing.
/// </summary>
internal sealed class Undefined
{
    private Undefined(string message)
    {
        Message = message;
    }

    /// <summary>The message of the error raised when this value is used.</summary>
    public string Message { get; }

    /// <summary>A variable that does not exist.</summary>
    public static Undefined ForName(string name) => new($"'{name}' is undefined");

    /// <summary>A missing attribute or key of <paramref name="owner"/>.</summary>
    public static Undefined ForAttribute(object? owner, string name) => new($"{PyRepr.Repr(PyOps.ObjectTypeRepr(owner))} has no attribute {PyRepr.Repr(name)}");

    /// <summary>A missing element (non-string key) of <paramref name="owner"/>.</summary>
    public static Undefined ForElement(object? owner, object? key) => new($"{PyOps.ObjectTypeRepr(owner)} has no element {PyRepr.Repr(key)}");

    /// <summary>An undefined value with a custom message.</summary>
    public static Undefined WithHint(string hint) => new(hint);

    /// <summary>The exception for using this value.</summary>
    public TemplateRuntimeError Fail() => new(Message);
}

/// <summary>
/// An error raised while rendering; <see cref="Renderer"/> tags it with the line of the innermost expression
/// being evaluated and turns it into a <see cref="ChatTemplateException"/>.
/// </summary>
internal abstract class TemplateError(string message) : Exception(message)
{
    /// <summary>The template line the error arose on, once known.</summary>
    public int? Line { get; set; }
}

/// <summary>A type error, a use of an undefined value, a limit reached.</summary>
internal sealed class TemplateRuntimeError(string message) : TemplateError(message);

/// <summary>An error raised by the template through <c>raise_exception(message)</c>.</summary>
internal sealed class TemplateRaisedError(string message) : TemplateError(message);

/// <summary>The object <c>namespace(...)</c> returns: the one value whose attributes templates may assign.</summary>
internal sealed class Namespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>Something templates can call: a global function, a bound method, a macro.</summary>
internal interface IJinjaCallable
{
    /// <summary>The name used in error messages.</summary>
    string Name { get; }

    /// <summary>Calls it.</summary>
    object? Invoke(Renderer renderer, Arguments args);
}

/// <summary>A built-in function or bound method.</summary>
internal sealed class BuiltinFunction(string name, Func<Renderer, Arguments, object?> body) : IJinjaCallable
{
    public string Name { get; } = name;

    public object? Invoke(Renderer renderer, Arguments args) => body(renderer, args);
}

/// <summary>Evaluated call arguments, with helpers to bind them like a Python signature.</summary>
internal sealed class Arguments(string function, IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> keyword)
{
    public static readonly IReadOnlyDictionary<string, object?> NoKeywords = new Dictionary<string, object?>();

    public string Function { get; } = function;

    public IReadOnlyList<object?> Positional { get; } = positional;

    public IReadOnlyDictionary<string, object?> Keyword { get; } = keyword;

    /// <summary>The argument at <paramref name="index"/> or named <paramref name="name"/>, else the default.</summary>
    public object? Get(int index, string name, object? defaultValue = null) =>
        TryGet(index, name, out var value) ? value : defaultValue;

    /// <summary>Whether the argument was given, positionally or by name.</summary>
    public bool TryGet(int index, string name, out object? value)
    {
        if (index >= 0 && index < Positional.Count)
        {
            if (Keyword.ContainsKey(name))
            {
                throw new TemplateRuntimeError($"{Function}() got multiple values for argument '{name}'");
            }

            value = Positional[index];
            return true;
        }

        return Keyword.TryGetValue(name, out value);
    }

    /// <summary>A required argument.</summary>
    public object? Required(int index, string name) =>
        TryGet(index, name, out var value)
            ? value
            : throw new TemplateRuntimeError($"{Function}() missing required argument '{name}'");

    /// <summary>Rejects extra positional arguments and unknown keywords.</summary>
    public Arguments Check(int maxPositional, params string[] names)
    {
        if (Positional.Count > maxPositional)
        {
            throw new TemplateRuntimeError(
                $"{Function}() takes at most {maxPositional} positional argument{(maxPositional == 1 ? "" : "s")} ({Positional.Count} given)");
        }

        foreach (var key in Keyword.Keys)
        {
            if (Array.IndexOf(names, key) < 0)
            {
                throw new TemplateRuntimeError($"{Function}() got an unexpected keyword argument '{key}'");
            }
        }

        return this;
    }
}

/// <summary>The <c>loop</c> variable of a <c>for</c> loop.</summary>
internal sealed class LoopContext(IReadOnlyList<object?> items, int depth)
{
    private object? _lastChanged = Undefined.WithHint("no previous value");

    public int Index0 { get; set; }

    public int Depth { get; } = depth;

    public int Length => items.Count;

    /// <summary>The attribute <paramref name="name"/> of <c>loop</c>.</summary>
    public object? Get(string name) => name switch
    {
        "index" => (long)(Index0 + 1),
        "index0" => (long)Index0,
        "revindex" => (long)(Length - Index0),
        "revindex0" => (long)(Length - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Length - 1,
        "length" => (long)Length,
        "depth" => (long)Depth,
        "depth0" => (long)(Depth - 1),
        "previtem" => Index0 > 0 ? items[Index0 - 1] : Undefined.WithHint("there is no previous item"),
        "nextitem" => Index0 + 1 < Length ? items[Index0 + 1] : Undefined.WithHint("there is no next item"),
        "cycle" => new BuiltinFunction("loop.cycle", (_, args) =>
            args.Positional.Count == 0
                ? throw new TemplateRuntimeError("no items for cycling given")
                : args.Positional[Index0 % args.Positional.Count]),
        "changed" => new BuiltinFunction("loop.changed", (_, args) =>
        {
            var value = args.Positional.ToList();
            if (_lastChanged is List<object?> last && PyOps.Equal(last, value))
            {
                return false;
            }

            _lastChanged = value;
            return true;
        }),
        _ => Undefined.ForAttribute(this, name),
    };
}

/// <summary>
/// A variable scope; lookups fall back to the parent. Scopes hold few variables (a loop iteration has its target
/// and <c>loop</c>), so they are kept in small arrays searched linearly rather than in a dictionary.
/// </summary>
internal sealed class Scope(Scope? parent)
{
    private string[] _names = [];
    private object?[] _values = [];
    private int _count;

    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
        {
            var index = scope.IndexOf(name);
            if (index >= 0)
            {
                value = scope._values[index];
                return true;
            }
        }

        value = null;
        return false;
    }

    public void Set(string name, object? value)
    {
        var index = IndexOf(name);
        if (index >= 0)
        {
            _values[index] = value;
            return;
        }

        if (_count == _names.Length)
        {
            var capacity = Math.Max(4, _count * 2);
            Array.Resize(ref _names, capacity);
            Array.Resize(ref _values, capacity);
        }

        _names[_count] = name;
        _values[_count] = value;
        _count++;
    }

    private int IndexOf(string name)
    {
        for (var i = 0; i < _count; i++)
        {
            if (string.Equals(_names[i], name, StringComparison.Ordinal))
            {
                return i;
            }
        }

        return -1;
    }
}

/// <summary>Python semantics for the plain .NET values templates work with.</summary>
/// <remarks>
/// Value model: <c>null</c> is None; <see cref="bool"/>, <see cref="long"/> and <see cref="double"/> are the
/// numbers (bools are integers, as in Python); <see cref="string"/>; <see cref="List{T}"/> of object is a list,
/// an <c>object?[]</c> array a tuple; <see cref="Dictionary{TKey,TValue}"/> with string keys a dict (insertion
/// ordered); plus <see cref="Undefined"/>, <see cref="Namespace"/>, <see cref="LoopContext"/> and callables.
/// </remarks>
internal static class PyOps
{
    /// <summary>How deeply values may nest when compared, printed or serialised.</summary>
    public const int MaxNesting = 500;

    /// <summary>The longest string (UTF-16 units) or list an operator may build, and the longest output.</summary>
    public const int MaxLength = 16 * 1024 * 1024;

    /// <summary>Python's name for the value's type, as in TypeError messages.</summary>
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        object?[] => "tuple",
        Dictionary<string, object?> => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        LoopContext => "LoopContext",
        Macro => "Macro",
        IJinjaCallable => "function",
        _ => value.GetType().Name,
    };

    /// <summary>jinja2's <c>object_type_repr</c>: "None", "dict object", ...</summary>
    public static string ObjectTypeRepr(object? value) => value is null ? "None" : $"{TypeName(value)} object";

    /// <summary>Python truthiness.</summary>
    public static bool Truthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        object?[] t => t.Length > 0,
        Dictionary<string, object?> d => d.Count > 0,
        Undefined => false,
        _ => true,
    };

    public static bool IsNumber(object? value) => value is bool or long or double;

    public static bool IsInteger(object? value) => value is bool or long;

    /// <summary>The value as a double (for a number).</summary>
    public static double ToDouble(object? value) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        double d => d,
        _ => throw new InvalidOperationException("not a number"),
    };

    /// <summary>The value as a long (for a bool or an integer).</summary>
    public static long ToLong(object? value) => value switch
    {
        bool b => b ? 1 : 0,
        long l => l,
        _ => throw new InvalidOperationException("not an integer"),
    };

    /// <summary>Python <c>==</c>.</summary>
    public static bool Equal(object? a, object? b, int depth = 0)
    {
        if (depth > MaxNesting)
        {
            throw new TemplateRuntimeError("values nest too deeply to compare");
        }

        if (IsNumber(a) && IsNumber(b))
        {
            return IsInteger(a) && IsInteger(b) ? ToLong(a) == ToLong(b) : ToDouble(a) == ToDouble(b);
        }

        switch (a)
        {
            case null:
                return b is null;
            case string sa:
                return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case List<object?> la:
                return b is List<object?> lb && SequenceEqual(la, lb, depth);
            case object?[] ta:
                return b is object?[] tb && SequenceEqual(ta, tb, depth);
            case Dictionary<string, object?> da:
                if (b is not Dictionary<string, object?> db || da.Count != db.Count)
                {
                    return false;
                }

                foreach (var (key, value) in da)
                {
                    if (!db.TryGetValue(key, out var other) || !Equal(value, other, depth + 1))
                    {
                        return false;
                    }
                }

                return true;
            case Undefined:
                return b is Undefined;
            default:
                return ReferenceEquals(a, b);
        }
    }

    private static bool SequenceEqual(IReadOnlyList<object?> a, IReadOnlyList<object?> b, int depth)
    {
        if (a.Count != b.Count)
        {
            return false;
        }

        for (var i = 0; i < a.Count; i++)
        {
            if (!Equal(a[i], b[i], depth + 1))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Python ordering (<c>&lt;</c> and friends): numbers, strings, lists and tuples.</summary>
    public static int Compare(object? a, object? b, string op, int depth = 0)
    {
        if (a is Undefined ua)
        {
            throw ua.Fail();
        }

        if (b is Undefined ub)
        {
            throw ub.Fail();
        }

        if (IsNumber(a) && IsNumber(b))
        {
            return IsInteger(a) && IsInteger(b) ? ToLong(a).CompareTo(ToLong(b)) : CompareDoubles(ToDouble(a), ToDouble(b));
        }

        if (a is string sa && b is string sb)
        {
            return PyText.CompareCodePoints(sa, sb);
        }

        if ((a is List<object?> && b is List<object?>) || (a is object?[] && b is object?[]))
        {
            if (depth > MaxNesting)
            {
                throw new TemplateRuntimeError("values nest too deeply to compare");
            }

            var la = (IReadOnlyList<object?>)a;
            var lb = (IReadOnlyList<object?>)b;
            for (var i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (!Equal(la[i], lb[i]))
                {
                    return Compare(la[i], lb[i], op, depth + 1);
                }
            }

            return la.Count.CompareTo(lb.Count);
        }

        throw new TemplateRuntimeError(
            $"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static int CompareDoubles(double a, double b) =>
        double.IsNaN(a) || double.IsNaN(b) ? 2 /* every ordering test is false */ : a.CompareTo(b);

    /// <summary>Evaluates <c>a op b</c> for a comparison operator.</summary>
    public static bool CompareOp(string op, object? a, object? b)
    {
        switch (op)
        {
            case "==": return Equal(a, b);
            case "!=": return !Equal(a, b);
            case "in": return Contains(b, a);
            case "not in": return !Contains(b, a);
        }

        var order = Compare(a, b, op);
        if (order == 2)
        {
            return false;
        }

        return op switch
        {
            "<" => order < 0,
            "<=" => order <= 0,
            ">" => order > 0,
            ">=" => order >= 0,
            _ => throw new InvalidOperationException(op),
        };
    }

    /// <summary>Python's <c>item in container</c>.</summary>
    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                return item is string sub
                    ? s.Contains(sub, StringComparison.Ordinal)
                    : throw new TemplateRuntimeError($"'in <string>' requires string as left operand, not {TypeName(item)}");
            case Dictionary<string, object?> d:
                return item is string key && d.ContainsKey(key);
            case List<object?> or object?[]:
                foreach (var element in (IReadOnlyList<object?>)container)
                {
                    if (Equal(element, item))
                    {
                        return true;
                    }
                }

                return false;
            case Undefined:
                return false;
            case Namespace ns:
                return item is string name && ns.Attributes.ContainsKey(name);
            default:
                throw new TemplateRuntimeError($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    /// <summary>Python's <c>len()</c>.</summary>
    public static long Length(object? value) => value switch
    {
        string s => PyText.CodePointCount(s),
        List<object?> l => l.Count,
        object?[] t => t.Length,
        Dictionary<string, object?> d => d.Count,
        Undefined => 0,
        _ => throw new TemplateRuntimeError($"object of type '{TypeName(value)}' has no len()"),
    };

    /// <summary>Iterates a value as a Python <c>for</c> loop would.</summary>
    public static IReadOnlyList<object?> Iterate(object? value) => value switch
    {
        List<object?> l => l,
        object?[] t => t,
        string s => PyText.CodePoints(s),
        Dictionary<string, object?> d => d.Keys.Cast<object?>().ToList(),
        Undefined => [],
        _ => throw new TemplateRuntimeError($"'{TypeName(value)}' object is not iterable"),
    };

    // ------------------------------------------------------------ arithmetic

    /// <summary>Evaluates a binary arithmetic operator with Python semantics.</summary>
    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "~")
        {
            var left = PyRepr.Str(a);
            var right = PyRepr.Str(b);
            CheckLength((long)left.Length + right.Length);
            return left + right;
        }

        if (a is Undefined ua)
        {
            throw ua.Fail();
        }

        if (b is Undefined ub)
        {
            throw ub.Fail();
        }

        if (IsNumber(a) && IsNumber(b))
        {
            return IsInteger(a) && IsInteger(b) ? IntegerOp(op, ToLong(a), ToLong(b)) : FloatOp(op, ToDouble(a), ToDouble(b));
        }

        switch (op)
        {
            case "+" when a is string sa && b is string sb:
                CheckLength((long)sa.Length + sb.Length);
                return sa + sb;
            case "+" when a is string:
                throw new TemplateRuntimeError($"can only concatenate str (not \"{TypeName(b)}\") to str");
            case "+" when a is List<object?> la && b is List<object?> lb:
                CheckLength((long)la.Count + lb.Count);
                return la.Concat(lb).ToList();
            case "+" when a is List<object?>:
                throw new TemplateRuntimeError($"can only concatenate list (not \"{TypeName(b)}\") to list");
            case "+" when a is object?[] ta && b is object?[] tb:
                return ta.Concat(tb).ToArray();
            case "*" when IsRepeatable(a) && IsInteger(b):
                return Repeat(a, ToLong(b));
            case "*" when IsRepeatable(b) && IsInteger(a):
                return Repeat(b, ToLong(a));
            case "%" when a is string format:
                return PyFormat.Percent(format, b);
        }

        var symbol = op == "//" ? "//" : op;
        throw new TemplateRuntimeError(
            $"unsupported operand type(s) for {symbol}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    private static bool IsRepeatable(object? value) => value is string or List<object?> or object?[];

    private static void CheckLength(long length)
    {
        if (length > MaxLength)
        {
            throw new TemplateRuntimeError($"the result would be too large ({length} items; at most {MaxLength})");
        }
    }

    private static object Repeat(object? sequence, long count)
    {
        count = Math.Max(0, count);
        var unit = sequence is string text ? text.Length : Length(sequence);
        CheckLength(unit * Math.Min(count, MaxLength + 1L));

        switch (sequence)
        {
            case string s:
                {
                    var builder = new StringBuilder(s.Length * (int)count);
                    for (var i = 0; i < count; i++)
                    {
                        builder.Append(s);
                    }

                    return builder.ToString();
                }

            case List<object?> l:
                return Enumerable.Range(0, (int)count).SelectMany(_ => l).ToList();
            default:
                return Enumerable.Range(0, (int)count).SelectMany(_ => (object?[])sequence!).ToArray();
        }
    }

    private static object IntegerOp(string op, long a, long b)
    {
        try
        {
            // Arms are boxed one by one: a switch over long and double arms would otherwise widen every integer to double.
            return op switch
            {
                "+" => (object)checked(a + b),
                "-" => checked(a - b),
                "*" => checked(a * b),
                "/" => b == 0 ? throw DivisionByZero() : (double)a / b,
                "//" => b == 0 ? throw DivisionByZero() : FloorDiv(a, b),
                "%" => b == 0 ? throw DivisionByZero() : FloorMod(a, b),
                "**" => b >= 0 ? (object)IntegerPower(a, b) : Math.Pow(a, b),
                _ => throw new InvalidOperationException(op),
            };
        }
        catch (OverflowException)
        {
            throw new TemplateRuntimeError($"integer overflow in {a} {op} {b}");
        }
    }

    private static long FloorDiv(long a, long b)
    {
        var quotient = a / b;
        return (a % b != 0) && ((a < 0) != (b < 0)) ? quotient - 1 : quotient;
    }

    private static long FloorMod(long a, long b)
    {
        var remainder = a % b;
        return remainder != 0 && ((remainder < 0) != (b < 0)) ? remainder + b : remainder;
    }

    private static long IntegerPower(long a, long b)
    {
        long result = 1;
        var factor = a;
        while (b > 0)
        {
            if ((b & 1) != 0)
            {
                result = checked(result * factor);
            }

            b >>= 1;
            if (b > 0)
            {
                factor = checked(factor * factor);
            }
        }

        return result;
    }

    private static double FloatOp(string op, double a, double b) => op switch
    {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => b == 0 ? throw DivisionByZero("float division by zero") : a / b,
        "//" => b == 0 ? throw DivisionByZero("float floor division by zero") : FloatDivMod(a, b).Quotient,
        "%" => b == 0 ? throw DivisionByZero("float modulo") : FloatDivMod(a, b).Remainder,
        "**" => Math.Pow(a, b),
        _ => throw new InvalidOperationException(op),
    };

    /// <summary>CPython's float divmod: a floored quotient and a remainder with the divisor's sign.</summary>
    private static (double Quotient, double Remainder) FloatDivMod(double a, double b)
    {
        var remainder = a % b;
        var quotient = (a - remainder) / b;
        if (remainder != 0)
        {
            if ((b < 0) != (remainder < 0))
            {
                remainder += b;
                quotient -= 1.0;
            }
        }
        else
        {
            remainder = Math.CopySign(0.0, b);
        }

        double floored;
        if (quotient != 0)
        {
            floored = Math.Floor(quotient);
            if (quotient - floored > 0.5)
            {
                floored += 1.0;
            }
        }
        else
        {
            floored = Math.CopySign(0.0, a / b);
        }

        return (floored, remainder);
    }

    private static TemplateRuntimeError DivisionByZero(string message = "division by zero") => new(message);

    /// <summary>Unary minus and plus.</summary>
    public static object? Unary(string op, object? value)
    {
        if (value is Undefined undefined)
        {
            throw undefined.Fail();
        }

        return (op, value) switch
        {
            ("-", bool or long) => (object)checked(-ToLong(value)),
            ("-", double d) => -d,
            ("+", bool or long) => (object)ToLong(value),
            ("+", double d) => d,
            _ => throw new TemplateRuntimeError($"bad operand type for unary {op}: '{TypeName(value)}'"),
        };
    }

    // ------------------------------------------------------------ attribute and item access

    private static readonly HashSet<string> StringMethods = new(StringComparer.Ordinal)
    {
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower",
        "replace", "title", "capitalize", "find", "rfind", "index", "rindex", "count", "join", "isdigit", "isalpha",
        "isalnum", "isspace", "isupper", "islower", "isnumeric", "isdecimal", "zfill", "center", "ljust", "rjust",
        "casefold", "swapcase", "removeprefix", "removesuffix", "partition", "rpartition",
    };

    private static readonly HashSet<string> DictMethods = new(StringComparer.Ordinal) { "get", "items", "keys", "values", "copy" };

    private static readonly HashSet<string> UnsafeDictMethods = new(StringComparer.Ordinal)
    {
        "clear", "pop", "popitem", "setdefault", "update",
    };

    private static readonly HashSet<string> ListMethods = new(StringComparer.Ordinal) { "count", "index", "copy" };

    private static readonly HashSet<string> UnsafeListMethods = new(StringComparer.Ordinal)
    {
        "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear",
    };

    /// <summary><c>obj.name</c>, as jinja2's sandbox resolves it: a Python attribute (method) first, then the key.</summary>
    public static object? GetAttribute(object? obj, string name)
    {
        switch (obj)
        {
            case Undefined undefined:
                throw undefined.Fail();
            case Dictionary<string, object?> dict:
                if (DictMethods.Contains(name))
                {
                    return Methods.Bind(obj, name);
                }

                if (UnsafeDictMethods.Contains(name))
                {
                    return Unsafe(obj, name);
                }

                return dict.TryGetValue(name, out var value) ? value : Undefined.ForAttribute(obj, name);
            case string:
                return StringMethods.Contains(name) ? Methods.Bind(obj, name) : Undefined.ForAttribute(obj, name);
            case List<object?> or object?[]:
                if (ListMethods.Contains(name) && (name != "copy" || obj is List<object?>))
                {
                    return Methods.Bind(obj, name);
                }

                return UnsafeListMethods.Contains(name) && obj is List<object?> ? Unsafe(obj, name) : Undefined.ForAttribute(obj, name);
            case Namespace ns:
                return ns.Attributes.TryGetValue(name, out var attribute) ? attribute : Undefined.ForAttribute(obj, name);
            case LoopContext loop:
                return loop.Get(name);
            default:
                return Undefined.ForAttribute(obj, name);
        }
    }

    private static Undefined Unsafe(object obj, string name) =>
        Undefined.WithHint($"access to attribute '{name}' of '{TypeName(obj)}' object is unsafe.");

    /// <summary><c>obj[key]</c>, as jinja2 resolves it: the item first, then (for a string key) the attribute.</summary>
    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined undefined:
                throw undefined.Fail();
            case Dictionary<string, object?> dict when key is string name:
                return dict.TryGetValue(name, out var value) ? value : GetAttribute(obj, name);
            case List<object?> or object?[] or string when IsInteger(key):
                {
                    var length = Length(obj);
                    var index = ToLong(key);
                    if (index < 0)
                    {
                        index += length;
                    }

                    if (index < 0 || index >= length)
                    {
                        return Undefined.ForElement(obj, key);
                    }

                    return obj switch
                    {
                        string s => PyText.CodePointAt(s, (int)index),
                        object?[] t => t[index],
                        _ => ((List<object?>)obj)[(int)index],
                    };
                }

            case Namespace or LoopContext when key is string name:
                return GetAttribute(obj, name);
        }

        return key is string attribute ? GetAttribute(obj, attribute) : Undefined.ForElement(obj, key);
    }

    /// <summary><c>obj[start:stop:step]</c> on lists, tuples and strings.</summary>
    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        if (obj is Undefined undefined)
        {
            throw undefined.Fail();
        }

        long? Bound(object? value, string what) => value switch
        {
            null => null,
            bool or long => ToLong(value),
            _ => throw new TemplateRuntimeError($"slice {what} must be an integer or none, not '{TypeName(value)}'"),
        };

        var stepValue = Bound(step, "step") ?? 1;
        if (stepValue == 0)
        {
            throw new TemplateRuntimeError("slice step cannot be zero");
        }

        IReadOnlyList<object?> items = obj switch
        {
            List<object?> l => l,
            object?[] t => t,
            string s => PyText.CodePoints(s),
            _ => throw new TemplateRuntimeError($"'{TypeName(obj)}' object is not subscriptable"),
        };
        var length = items.Count;
        var (from, to) = AdjustSlice(Bound(start, "start"), Bound(stop, "stop"), stepValue, length);
        var result = new List<object?>();
        if (stepValue > 0)
        {
            for (var i = from; i < to; i += stepValue)
            {
                result.Add(items[(int)i]);
            }
        }
        else
        {
            for (var i = from; i > to; i += stepValue)
            {
                result.Add(items[(int)i]);
            }
        }

        return obj switch
        {
            string => string.Concat(result.Cast<string>()),
            object?[] => result.ToArray(),
            _ => result,
        };
    }

    /// <summary>CPython's <c>PySlice_AdjustIndices</c>.</summary>
    private static (long Start, long Stop) AdjustSlice(long? start, long? stop, long step, long length)
    {
        long Clamp(long? value, long forNegativeStep, long forPositiveStep)
        {
            if (value is null)
            {
                return step < 0 ? forNegativeStep : forPositiveStep;
            }

            var v = value.Value;
            if (v < 0)
            {
                v += length;
                if (v < 0)
                {
                    v = step < 0 ? -1 : 0;
                }
            }
            else if (v >= length)
            {
                v = step < 0 ? length - 1 : length;
            }

            return v;
        }

        return (Clamp(start, length - 1, 0), Clamp(stop, -1, length));
    }

    /// <summary>Calls a callable value.</summary>
    public static object? Call(Renderer renderer, object? callee, Arguments args) => callee switch
    {
        IJinjaCallable callable => callable.Invoke(renderer, args),
        Undefined undefined => throw undefined.Fail(),
        _ => throw new TemplateRuntimeError($"'{TypeName(callee)}' object is not callable"),
    };
}
