namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>The tests (<c>value is name(args)</c>) of jinja2, with Python's notions of the types.</summary>
internal static class BuiltinTests
{
    private delegate bool Test(Renderer renderer, object? value, Arguments args);

    private static readonly Dictionary<string, Test> Tests = new(StringComparer.Ordinal)
    {
        ["defined"] = (_, v, _) => v is not Undefined,
        ["undefined"] = (_, v, _) => v is Undefined,
        ["none"] = (_, v, _) => v is null,
        ["boolean"] = (_, v, _) => v is bool,
        ["true"] = (_, v, _) => v is true,
        ["false"] = (_, v, _) => v is false,
        ["integer"] = (_, v, _) => v is long,
        ["float"] = (_, v, _) => v is double,
        // Python's numbers.Number: bools are numbers too.
        ["number"] = (_, v, _) => PyOps.IsNumber(v),
        ["string"] = (_, v, _) => v is string,
        ["mapping"] = (_, v, _) => v is Dictionary<string, object?>,
        // Anything with __iter__ (jinja2's Undefined has one) or __len__ and __getitem__.
        ["iterable"] = (_, v, _) => v is string or List<object?> or object?[] or Dictionary<string, object?> or Undefined,
        ["sequence"] = (_, v, _) => v is string or List<object?> or object?[] or Dictionary<string, object?> or Undefined,
        ["callable"] = (_, v, _) => v is IJinjaCallable,
        ["sameas"] = (_, v, a) => SameAs(v, a.Check(1).Required(0, "other")),
        ["escaped"] = (_, _, _) => false,
        ["odd"] = (_, v, _) => PyOps.Equal(PyOps.Binary("%", v, 2L), 1L),
        ["even"] = (_, v, _) => PyOps.Equal(PyOps.Binary("%", v, 2L), 0L),
        ["divisibleby"] = (_, v, a) => PyOps.Equal(PyOps.Binary("%", v, a.Check(1).Required(0, "num")), 0L),
        ["lower"] = (_, v, _) => PyText.IsCase(PyRepr.Str(v), upper: false),
        ["upper"] = (_, v, _) => PyText.IsCase(PyRepr.Str(v), upper: true),
        ["in"] = (_, v, a) => PyOps.Contains(a.Check(1).Required(0, "seq"), v),
        ["eq"] = (_, v, a) => PyOps.CompareOp("==", v, a.Check(1).Required(0, "other")),
        ["equalto"] = (_, v, a) => PyOps.CompareOp("==", v, a.Check(1).Required(0, "other")),
        ["=="] = (_, v, a) => PyOps.CompareOp("==", v, a.Check(1).Required(0, "other")),
        ["ne"] = (_, v, a) => PyOps.CompareOp("!=", v, a.Check(1).Required(0, "other")),
        ["!="] = (_, v, a) => PyOps.CompareOp("!=", v, a.Check(1).Required(0, "other")),
        ["lt"] = (_, v, a) => PyOps.CompareOp("<", v, a.Check(1).Required(0, "other")),
        ["lessthan"] = (_, v, a) => PyOps.CompareOp("<", v, a.Check(1).Required(0, "other")),
        ["<"] = (_, v, a) => PyOps.CompareOp("<", v, a.Check(1).Required(0, "other")),
        ["le"] = (_, v, a) => PyOps.CompareOp("<=", v, a.Check(1).Required(0, "other")),
        ["<="] = (_, v, a) => PyOps.CompareOp("<=", v, a.Check(1).Required(0, "other")),
        ["gt"] = (_, v, a) => PyOps.CompareOp(">", v, a.Check(1).Required(0, "other")),
        ["greaterthan"] = (_, v, a) => PyOps.CompareOp(">", v, a.Check(1).Required(0, "other")),
        [">"] = (_, v, a) => PyOps.CompareOp(">", v, a.Check(1).Required(0, "other")),
        ["ge"] = (_, v, a) => PyOps.CompareOp(">=", v, a.Check(1).Required(0, "other")),
        [">="] = (_, v, a) => PyOps.CompareOp(">=", v, a.Check(1).Required(0, "other")),
    };

    /// <summary>Whether a test of this name exists (checked when the template is parsed).</summary>
    public static bool Exists(string name) => Tests.ContainsKey(name);

    /// <summary>Applies test <paramref name="name"/>.</summary>
    public static bool Apply(Renderer renderer, string name, object? value, Arguments args) =>
        Tests.TryGetValue(name, out var test)
            ? test(renderer, value, args)
            : throw new TemplateRuntimeError($"No test named '{name}'.");

    /// <summary>Python's <c>is</c>: identity; None, booleans and equal small values count as the same object.</summary>
    private static bool SameAs(object? value, object? other) => (value, other) switch
    {
        (null, null) => true,
        (bool a, bool b) => a == b,
        (long a, long b) => a == b && a is >= -5 and <= 256, // CPython caches small integers
        _ => ReferenceEquals(value, other),
    };
}
