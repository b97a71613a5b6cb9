using System.Text;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>A macro defined with <c>{% macro %}</c> (or the body of a <c>{% call %}</c> block, as <c>caller</c>).</summary>
internal sealed class Macro(string name, IReadOnlyList<MacroParam> parameters, IReadOnlyList<Stmt> body, Scope closure)
    : IJinjaCallable
{
    public string Name { get; } = name;

    public IReadOnlyList<MacroParam> Parameters { get; } = parameters;

    public IReadOnlyList<Stmt> Body { get; } = body;

    /// <summary>The scope the macro was defined in; its variables stay visible inside.</summary>
    public Scope Closure { get; } = closure;

    public object? Invoke(Renderer renderer, Arguments args) => renderer.CallMacro(this, args);
}

/// <summary>
/// Renders a parsed template. Scoping follows jinja2: <c>if</c> blocks share the enclosing scope, each
/// <c>for</c> iteration, macro call and <c>with</c> block gets its own (so a <c>set</c> inside a loop does not
/// leak out of it — use <c>namespace()</c>), and top-level <c>set</c> may shadow the context variables.
/// </summary>
internal sealed class Renderer
{
    /// <summary>How deeply macros may call each other.</summary>
    private const int MaxCallDepth = 100;

    /// <summary>Loop iterations and macro calls allowed in one render (stops runaway templates).</summary>
    private const long MaxSteps = 1_000_000;

    /// <summary>The longest output one render may produce, in UTF-16 units.</summary>
    private const int MaxOutputLength = PyOps.MaxLength;

    private readonly TimeProvider _clock;
    private StringBuilder _output = new();
    private Scope _scope;
    private int _callDepth;
    private int _loopDepth;
    private long _steps;

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    private Renderer(Scope scope, TimeProvider clock)
    {
        _scope = scope;
        _clock = clock;
    }

    /// <summary>
    /// Renders <paramref name="body"/> with <paramref name="variables"/> (already plain template values) on top of the
    /// globals <c>range</c>, <c>namespace</c>, <c>dict</c>, <c>raise_exception</c> and <c>strftime_now</c>.
    /// </summary>
    public static string Render(IReadOnlyList<Stmt> body, IReadOnlyDictionary<string, object?> variables, TimeProvider clock)
    {
        var globals = new Scope(null);
        foreach (var (name, function) in Globals(clock))
        {
            globals.Set(name, function);
        }

        var root = new Scope(globals);
        foreach (var (name, value) in variables)
        {
            root.Set(name, value);
        }

        var renderer = new Renderer(root, clock);
        try
        {
            renderer.ExecuteBody(body);
        }
        catch (TemplateError error)
        {
            var kind = error is TemplateRaisedError ? ChatTemplateErrorKind.Raised : ChatTemplateErrorKind.Render;
            throw new ChatTemplateException(kind, error.Message, error.Line);
        }

        return renderer._output.ToString();
    }

    private static IEnumerable<(string Name, IJinjaCallable Function)> Globals(TimeProvider clock)
    {
        yield return ("range", new BuiltinFunction("range", (_, a) => Range(a)));
        yield return ("namespace", new BuiltinFunction("namespace", (_, a) => MakeNamespace(a)));
        yield return ("dict", new BuiltinFunction("dict", (_, a) => MakeDict(a)));
        yield return ("raise_exception", new BuiltinFunction("raise_exception", (_, a) =>
            throw new TemplateRaisedError(PyRepr.Str(a.Check(1, "message").Get(0, "message")))));
        yield return ("strftime_now", new BuiltinFunction("strftime_now", (_, a) =>
        {
            var format = a.Check(1, "format").Required(0, "format");
            return PyFormat.Strftime(clock.GetLocalNow().DateTime, format as string
                ?? throw new TemplateRuntimeError("strftime_now() argument must be str"));
        }));
    }

    /// <summary>The sandbox's limit on <c>range()</c>, as in jinja2.</summary>
    private const long MaxRange = 100_000;

    private static List<object?> Range(Arguments a)
    {
        a.Check(3);
        long RequireInt(object? value) => PyOps.IsInteger(value)
            ? PyOps.ToLong(value)
            : throw new TemplateRuntimeError($"'{PyOps.TypeName(value)}' object cannot be interpreted as an integer");

        var (start, stop, step) = a.Positional.Count switch
        {
            0 => throw new TemplateRuntimeError("range expected at least 1 argument, got 0"),
            1 => (0L, RequireInt(a.Positional[0]), 1L),
            2 => (RequireInt(a.Positional[0]), RequireInt(a.Positional[1]), 1L),
            _ => (RequireInt(a.Positional[0]), RequireInt(a.Positional[1]), RequireInt(a.Positional[2])),
        };
        if (step == 0)
        {
            throw new TemplateRuntimeError("range() arg 3 must not be zero");
        }

        var count = step > 0
            ? (stop > start ? ((stop - start - 1) / step) + 1 : 0)
            : (start > stop ? ((start - stop - 1) / -step) + 1 : 0);
        if (count > MaxRange)
        {
            throw new TemplateRuntimeError(
                $"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxRange}).");
        }

        var result = new List<object?>((int)count);
        for (var i = 0L; i < count; i++)
        {
            result.Add(start + (i * step));
        }

        return result;
    }

    private static Namespace MakeNamespace(Arguments a)
    {
        var ns = new Namespace();
        foreach (var positional in a.Positional)
        {
            if (positional is not Dictionary<string, object?> initial)
            {
                throw new TemplateRuntimeError("namespace() takes a dict and keyword arguments");
            }

            foreach (var (key, value) in initial)
            {
                ns.Attributes[key] = value;
            }
        }

        foreach (var (key, value) in a.Keyword)
        {
            ns.Attributes[key] = value;
        }

        return ns;
    }

    private static Dictionary<string, object?> MakeDict(Arguments a)
    {
        var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var positional in a.Positional)
        {
            if (positional is not Dictionary<string, object?> initial)
            {
                throw new TemplateRuntimeError("dict() takes a dict and keyword arguments");
            }

            foreach (var (key, value) in initial)
            {
                dict[key] = value;
            }
        }

        foreach (var (key, value) in a.Keyword)
        {
            dict[key] = value;
        }

        return dict;
    }

    // ------------------------------------------------------------ statements

    private Flow ExecuteBody(IReadOnlyList<Stmt> body)
    {
        foreach (var statement in body)
        {
            var flow = Execute(statement);
            if (flow != Flow.Normal)
            {
                return flow;
            }
        }

        return Flow.Normal;
    }

    private Flow Execute(Stmt statement)
    {
        try
        {
            return ExecuteCore(statement);
        }
        catch (TemplateError error) when (error.Line is null)
        {
            error.Line = statement.Pos.Line;
            throw;
        }
    }

    private Flow ExecuteCore(Stmt statement)
    {
        switch (statement)
        {
            case TextStmt text:
                Write(text.Text);
                return Flow.Normal;
            case PrintStmt print:
                Write(PyRepr.Str(Evaluate(print.Value)));
                return Flow.Normal;
            case IfStmt ifStatement:
                foreach (var branch in ifStatement.Branches)
                {
                    if (PyOps.Truthy(Evaluate(branch.Test)))
                    {
                        return ExecuteBody(branch.Body);
                    }
                }

                return ifStatement.Else is null ? Flow.Normal : ExecuteBody(ifStatement.Else);
            case ForStmt forStatement:
                return ExecuteFor(forStatement);
            case SetStmt set:
                Assign(set.Target, Evaluate(set.Value));
                return Flow.Normal;
            case SetBlockStmt setBlock:
                Assign(setBlock.Target, ApplyFilters(Capture(setBlock.Body, _scope), setBlock.Filters));
                return Flow.Normal;
            case MacroStmt macro:
                _scope.Set(macro.Name, new Macro(macro.Name, macro.Params, macro.Body, _scope));
                return Flow.Normal;
            case CallBlockStmt callBlock:
                {
                    var caller = new Macro("caller", callBlock.CallerParams, callBlock.Body, _scope);
                    var callee = Evaluate(callBlock.Call.Callee);
                    var args = EvaluateArguments(NameOf(callBlock.Call.Callee), callBlock.Call.Args, ("caller", caller));
                    Write(PyRepr.Str(PyOps.Call(this, callee, args)));
                    return Flow.Normal;
                }

            case FilterBlockStmt filterBlock:
                Write(PyRepr.Str(ApplyFilters(Capture(filterBlock.Body, _scope), filterBlock.Filters)));
                return Flow.Normal;
            case WithStmt with:
                {
                    var scope = new Scope(_scope);
                    foreach (var (target, value) in with.Assignments)
                    {
                        var evaluated = Evaluate(value);
                        var saved = _scope;
                        _scope = scope;
                        Assign(target, evaluated);
                        _scope = saved;
                    }

                    var outer = _scope;
                    _scope = scope;
                    try
                    {
                        return ExecuteBody(with.Body);
                    }
                    finally
                    {
                        _scope = outer;
                    }
                }

            case GenerationStmt generation:
                return ExecuteBody(generation.Body);
            case BreakStmt:
                return Flow.Break;
            case ContinueStmt:
                return Flow.Continue;
            default:
                throw new InvalidOperationException($"unknown statement {statement.GetType().Name}");
        }
    }

    private void Write(string text)
    {
        if (_output.Length + text.Length > MaxOutputLength)
        {
            throw new TemplateRuntimeError($"the rendered text would exceed {MaxOutputLength} characters");
        }

        _output.Append(text);
    }

    private void Step()
    {
        if (++_steps > MaxSteps)
        {
            throw new TemplateRuntimeError($"the template ran too long (more than {MaxSteps} loop iterations and macro calls)");
        }
    }

    private Flow ExecuteFor(ForStmt node)
    {
        var items = PyOps.Iterate(Evaluate(node.Iterable));
        if (node.Filter is not null)
        {
            var kept = new List<object?>();
            var outer = _scope;
            try
            {
                foreach (var item in items)
                {
                    Step();
                    _scope = new Scope(outer);
                    Assign(node.Target, item);
                    if (PyOps.Truthy(Evaluate(node.Filter)))
                    {
                        kept.Add(item);
                    }
                }
            }
            finally
            {
                _scope = outer;
            }

            items = kept;
        }

        if (items.Count == 0)
        {
            return node.Else is null ? Flow.Normal : ExecuteBody(node.Else);
        }

        var parent = _scope;
        var loop = new LoopContext(items, _loopDepth + 1);
        _loopDepth++;
        try
        {
            for (var i = 0; i < items.Count; i++)
            {
                Step();
                loop.Index0 = i;
                _scope = new Scope(parent);
                Assign(node.Target, items[i]);
                _scope.Set("loop", loop);
                if (ExecuteBody(node.Body) == Flow.Break)
                {
                    break;
                }
            }
        }
        finally
        {
            _scope = parent;
            _loopDepth--;
        }

        return Flow.Normal;
    }

    private void Assign(Target target, object? value)
    {
        switch (target)
        {
            case NameTarget name:
                _scope.Set(name.Name, value);
                break;
            case TupleTarget tuple:
                {
                    var items = PyOps.Iterate(value is Undefined u ? throw u.Fail() : value);
                    if (items.Count != tuple.Items.Count)
                    {
                        throw new TemplateRuntimeError(items.Count > tuple.Items.Count
                            ? $"too many values to unpack (expected {tuple.Items.Count})"
                            : $"not enough values to unpack (expected {tuple.Items.Count}, got {items.Count})");
                    }

                    for (var i = 0; i < items.Count; i++)
                    {
                        Assign(tuple.Items[i], items[i]);
                    }

                    break;
                }

            case AttributeTarget attribute:
                if (!_scope.TryGet(attribute.Name, out var owner) || owner is not Namespace ns)
                {
                    throw new TemplateRuntimeError("cannot assign attribute on non-namespace object");
                }

                ns.Attributes[attribute.Attribute] = value;
                break;
        }
    }

    /// <summary>Renders <paramref name="body"/> into a string in <paramref name="scope"/>.</summary>
    private string Capture(IReadOnlyList<Stmt> body, Scope scope)
    {
        var savedOutput = _output;
        var savedScope = _scope;
        _output = new StringBuilder();
        _scope = scope;
        try
        {
            ExecuteBody(body);
            return _output.ToString();
        }
        finally
        {
            _output = savedOutput;
            _scope = savedScope;
        }
    }

    private object? ApplyFilters(object? value, IReadOnlyList<FilterCall> filters)
    {
        foreach (var filter in filters)
        {
            value = BuiltinFilters.Apply(this, filter.Name, value, EvaluateArguments(filter.Name, filter.Args));
        }

        return value;
    }

    /// <summary>Calls a macro: binds its parameters in a fresh scope and renders its body to a string.</summary>
    public string CallMacro(Macro macro, Arguments args)
    {
        Step();
        if (_callDepth >= MaxCallDepth)
        {
            throw new TemplateRuntimeError($"macro calls nest too deeply (more than {MaxCallDepth})");
        }

        var scope = new Scope(macro.Closure);
        var savedScope = _scope;
        var savedLoopDepth = _loopDepth;
        _callDepth++;
        _scope = scope;
        _loopDepth = 0;
        try
        {
            var parameters = macro.Parameters;
            var extraKeywords = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (key, value) in args.Keyword)
            {
                if (key == "caller" && !parameters.Any(p => p.Name == "caller"))
                {
                    scope.Set("caller", value);
                }
                else if (!parameters.Any(p => p.Name == key))
                {
                    extraKeywords[key] = value;
                }
            }

            for (var i = 0; i < parameters.Count; i++)
            {
                var parameter = parameters[i];
                object? value;
                if (i < args.Positional.Count)
                {
                    if (args.Keyword.ContainsKey(parameter.Name))
                    {
                        throw new TemplateRuntimeError($"macro '{macro.Name}' got multiple values for argument '{parameter.Name}'");
                    }

                    value = args.Positional[i];
                }
                else if (args.Keyword.TryGetValue(parameter.Name, out var keyword))
                {
                    value = keyword;
                }
                else
                {
                    value = parameter.Default is null
                        ? Undefined.WithHint($"parameter '{parameter.Name}' was not provided")
                        : Evaluate(parameter.Default);
                }

                scope.Set(parameter.Name, value);
            }

            scope.Set("varargs", args.Positional.Skip(parameters.Count).ToArray());
            scope.Set("kwargs", extraKeywords);
            return Capture(macro.Body, scope);
        }
        finally
        {
            _callDepth--;
            _scope = savedScope;
            _loopDepth = savedLoopDepth;
        }
    }

    // ------------------------------------------------------------ expressions

    /// <summary>Evaluates an expression; an error raised here is tagged with its position.</summary>
    public object? Evaluate(Expr expression)
    {
        try
        {
            return EvaluateCore(expression);
        }
        catch (TemplateError error) when (error.Line is null)
        {
            error.Line = expression.Pos.Line;
            throw;
        }
    }

    private object? EvaluateCore(Expr expression)
    {
        switch (expression)
        {
            case ConstExpr constant:
                return constant.Value;
            case NameExpr name:
                return _scope.TryGet(name.Name, out var value) ? value : Undefined.ForName(name.Name);
            case ListExpr list:
                return list.Items.Select(Evaluate).ToList();
            case TupleExpr tuple:
                return tuple.Items.Select(Evaluate).ToArray();
            case DictExpr dict:
                {
                    var result = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var (keyExpr, valueExpr) in dict.Items)
                    {
                        var key = Evaluate(keyExpr) as string
                            ?? throw new TemplateRuntimeError("dictionary keys in chat templates must be strings");
                        result[key] = Evaluate(valueExpr);
                    }

                    return result;
                }

            case AttributeExpr attribute:
                return PyOps.GetAttribute(Evaluate(attribute.Target), attribute.Name);
            case ItemExpr item:
                {
                    var target = Evaluate(item.Target);
                    return PyOps.GetItem(target, Evaluate(item.Key));
                }

            case SliceExpr slice:
                {
                    var target = Evaluate(slice.Target);
                    object? Part(Expr? e) => e is null ? null : Evaluate(e);
                    return PyOps.Slice(target, Part(slice.Start), Part(slice.Stop), Part(slice.Step));
                }

            case CallExpr call:
                {
                    var callee = Evaluate(call.Callee);
                    return PyOps.Call(this, callee, EvaluateArguments(NameOf(call.Callee), call.Args));
                }

            case FilterExpr filter:
                {
                    var input = Evaluate(filter.Value);
                    return BuiltinFilters.Apply(this, filter.Filter.Name, input, EvaluateArguments(filter.Filter.Name, filter.Filter.Args));
                }

            case TestExpr test:
                {
                    var input = Evaluate(test.Value);
                    var result = BuiltinTests.Apply(this, test.Name, input, EvaluateArguments(test.Name, test.Args));
                    return test.Negated ? !result : result;
                }

            case UnaryExpr unary:
                return PyOps.Unary(unary.Operator, Evaluate(unary.Operand));
            case BinaryExpr binary:
                {
                    var left = Evaluate(binary.Left);
                    var right = Evaluate(binary.Right);
                    return PyOps.Binary(binary.Operator, left, right);
                }

            case CompareExpr compare:
                {
                    var left = Evaluate(compare.First);
                    foreach (var (op, operand) in compare.Rest)
                    {
                        var right = Evaluate(operand);
                        if (!PyOps.CompareOp(op, left, right))
                        {
                            return false;
                        }

                        left = right;
                    }

                    return true;
                }

            case AndExpr and:
                {
                    var left = Evaluate(and.Left);
                    return PyOps.Truthy(left) ? Evaluate(and.Right) : left;
                }

            case OrExpr or:
                {
                    var left = Evaluate(or.Left);
                    return PyOps.Truthy(left) ? left : Evaluate(or.Right);
                }

            case NotExpr not:
                return !PyOps.Truthy(Evaluate(not.Operand));
            case CondExpr conditional:
                if (PyOps.Truthy(Evaluate(conditional.Test)))
                {
                    return Evaluate(conditional.Then);
                }

                return conditional.Otherwise is null
                    ? Undefined.WithHint($"the inline if-expression on line {conditional.Pos.Line} evaluated to false and no else section was defined.")
                    : Evaluate(conditional.Otherwise);
            default:
                throw new InvalidOperationException($"unknown expression {expression.GetType().Name}");
        }
    }

    private static string NameOf(Expr callee) => callee switch
    {
        NameExpr name => name.Name,
        AttributeExpr attribute => attribute.Name,
        _ => "function",
    };

    private Arguments EvaluateArguments(string function, CallArgs args, (string Name, object? Value)? extra = null)
    {
        IReadOnlyList<object?> positional = [];
        if (args.Positional.Count > 0 || args.ExtraPositional is not null)
        {
            var list = args.Positional.Select(Evaluate).ToList();
            if (args.ExtraPositional is not null)
            {
                var more = Evaluate(args.ExtraPositional);
                list.AddRange(PyOps.Iterate(more is Undefined u ? throw u.Fail() : more));
            }

            positional = list;
        }

        IReadOnlyDictionary<string, object?> keyword = Arguments.NoKeywords;
        if (args.Keyword.Count > 0 || args.ExtraKeyword is not null || extra is not null)
        {
            var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (name, value) in args.Keyword)
            {
                dict[name] = Evaluate(value);
            }

            if (args.ExtraKeyword is not null)
            {
                var more = Evaluate(args.ExtraKeyword) switch
                {
                    Dictionary<string, object?> d => d,
                    Undefined u => throw u.Fail(),
                    var other => throw new TemplateRuntimeError(
                        $"{function}() argument after ** must be a mapping, not {PyOps.TypeName(other)}"),
                };
                foreach (var (name, value) in more)
                {
                    if (!dict.TryAdd(name, value))
                    {
                        throw new TemplateRuntimeError($"{function}() got multiple values for keyword argument '{name}'");
                    }
                }
            }

            if (extra is { } e)
            {
                dict[e.Name] = e.Value;
            }

            keyword = dict;
        }

        return new Arguments(function, positional, keyword);
    }

    /// <summary>Calls a filter by name (for the <c>map</c> filter).</summary>
    public object? CallFilter(string name, object? value, Arguments args) => BuiltinFilters.Apply(this, name, value, args);

    /// <summary>Calls a test by name (for <c>select</c> and friends).</summary>
    public bool CallTest(string name, object? value, Arguments args) => BuiltinTests.Apply(this, name, value, args);
}
