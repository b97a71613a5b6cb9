namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>A 1-based position in the template source.</summary>
internal readonly record struct SourcePos(int Line, int Column);

// ---------------------------------------------------------------- statements

/// <summary>A node of the template body.</summary>
internal abstract record Stmt(SourcePos Pos);

/// <summary>Literal text.</summary>
internal sealed record TextStmt(SourcePos Pos, string Text) : Stmt(Pos);

/// <summary><c>{{ expr }}</c></summary>
internal sealed record PrintStmt(SourcePos Pos, Expr Value) : Stmt(Pos);

/// <summary><c>{% if %}</c> with its <c>elif</c> branches and optional <c>else</c>.</summary>
internal sealed record IfStmt(SourcePos Pos, IReadOnlyList<IfBranch> Branches, IReadOnlyList<Stmt>? Else) : Stmt(Pos);

/// <summary>One <c>if</c>/<c>elif</c> condition and its body.</summary>
internal sealed record IfBranch(Expr Test, IReadOnlyList<Stmt> Body);

/// <summary><c>{% for target in iterable [if filter] %}body[{% else %}else]{% endfor %}</c></summary>
internal sealed record ForStmt(
    SourcePos Pos, Target Target, Expr Iterable, Expr? Filter, IReadOnlyList<Stmt> Body, IReadOnlyList<Stmt>? Else)
    : Stmt(Pos);

/// <summary><c>{% set target = value %}</c></summary>
internal sealed record SetStmt(SourcePos Pos, Target Target, Expr Value) : Stmt(Pos);

/// <summary><c>{% set name [| filters] %}body{% endset %}</c></summary>
internal sealed record SetBlockStmt(SourcePos Pos, Target Target, IReadOnlyList<FilterCall> Filters, IReadOnlyList<Stmt> Body)
    : Stmt(Pos);

/// <summary><c>{% macro name(params) %}body{% endmacro %}</c></summary>
internal sealed record MacroStmt(SourcePos Pos, string Name, IReadOnlyList<MacroParam> Params, IReadOnlyList<Stmt> Body)
    : Stmt(Pos);

/// <summary>A macro parameter with its optional default.</summary>
internal sealed record MacroParam(string Name, Expr? Default);

/// <summary><c>{% call[(params)] macro(args) %}body{% endcall %}</c>: the body becomes <c>caller()</c>.</summary>
internal sealed record CallBlockStmt(SourcePos Pos, CallExpr Call, IReadOnlyList<MacroParam> CallerParams, IReadOnlyList<Stmt> Body)
    : Stmt(Pos);

/// <summary><c>{% filter f %}body{% endfilter %}</c></summary>
internal sealed record FilterBlockStmt(SourcePos Pos, IReadOnlyList<FilterCall> Filters, IReadOnlyList<Stmt> Body) : Stmt(Pos);

/// <summary><c>{% with a = 1 %}body{% endwith %}</c></summary>
internal sealed record WithStmt(SourcePos Pos, IReadOnlyList<(Target Target, Expr Value)> Assignments, IReadOnlyList<Stmt> Body)
    : Stmt(Pos);

/// <summary><c>{% generation %}body{% endgeneration %}</c> (Hugging Face's assistant-mask marker): renders the body.</summary>
internal sealed record GenerationStmt(SourcePos Pos, IReadOnlyList<Stmt> Body) : Stmt(Pos);

/// <summary><c>{% break %}</c></summary>
internal sealed record BreakStmt(SourcePos Pos) : Stmt(Pos);

/// <summary><c>{% continue %}</c></summary>
internal sealed record ContinueStmt(SourcePos Pos) : Stmt(Pos);

// ---------------------------------------------------------------- assignment targets

/// <summary>Where <c>set</c> and <c>for</c> store values.</summary>
internal abstract record Target(SourcePos Pos);

/// <summary>A plain variable.</summary>
internal sealed record NameTarget(SourcePos Pos, string Name) : Target(Pos);

/// <summary><c>a, b</c>: unpacks a sequence.</summary>
internal sealed record TupleTarget(SourcePos Pos, IReadOnlyList<Target> Items) : Target(Pos);

/// <summary><c>ns.attr</c>: an attribute of a <c>namespace()</c> object.</summary>
internal sealed record AttributeTarget(SourcePos Pos, string Name, string Attribute) : Target(Pos);

// ---------------------------------------------------------------- expressions

/// <summary>An expression.</summary>
internal abstract record Expr(SourcePos Pos);

/// <summary>A literal: string, number, boolean, none.</summary>
internal sealed record ConstExpr(SourcePos Pos, object? Value) : Expr(Pos);

/// <summary>A variable reference.</summary>
internal sealed record NameExpr(SourcePos Pos, string Name) : Expr(Pos);

/// <summary><c>[a, b]</c></summary>
internal sealed record ListExpr(SourcePos Pos, IReadOnlyList<Expr> Items) : Expr(Pos);

/// <summary><c>(a, b)</c></summary>
internal sealed record TupleExpr(SourcePos Pos, IReadOnlyList<Expr> Items) : Expr(Pos);

/// <summary><c>{k: v}</c></summary>
internal sealed record DictExpr(SourcePos Pos, IReadOnlyList<(Expr Key, Expr Value)> Items) : Expr(Pos);

/// <summary><c>obj.name</c></summary>
internal sealed record AttributeExpr(SourcePos Pos, Expr Target, string Name) : Expr(Pos);

/// <summary><c>obj[key]</c> (also <c>obj.0</c>)</summary>
internal sealed record ItemExpr(SourcePos Pos, Expr Target, Expr Key) : Expr(Pos);

/// <summary><c>obj[start:stop:step]</c></summary>
internal sealed record SliceExpr(SourcePos Pos, Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr(Pos);

/// <summary>
/// Positional and keyword arguments of a call, filter or test, with the optional <c>*args</c> (a sequence
/// appended to the positional arguments) and <c>**kwargs</c> (a dict merged into the keyword arguments).
/// </summary>
internal sealed record CallArgs(
    IReadOnlyList<Expr> Positional,
    IReadOnlyList<(string Name, Expr Value)> Keyword,
    Expr? ExtraPositional = null,
    Expr? ExtraKeyword = null)
{
    public static readonly CallArgs None = new([], []);
}

/// <summary><c>f(args)</c></summary>
internal sealed record CallExpr(SourcePos Pos, Expr Callee, CallArgs Args) : Expr(Pos);

/// <summary>A filter name and its arguments.</summary>
internal sealed record FilterCall(SourcePos Pos, string Name, CallArgs Args);

/// <summary><c>value | filter(args)</c></summary>
internal sealed record FilterExpr(SourcePos Pos, Expr Value, FilterCall Filter) : Expr(Pos);

/// <summary><c>value is [not] test(args)</c></summary>
internal sealed record TestExpr(SourcePos Pos, Expr Value, string Name, CallArgs Args, bool Negated) : Expr(Pos);

/// <summary><c>-x</c>, <c>+x</c></summary>
internal sealed record UnaryExpr(SourcePos Pos, string Operator, Expr Operand) : Expr(Pos);

/// <summary>Arithmetic and concatenation: <c>+ - * / // % ** ~</c>.</summary>
internal sealed record BinaryExpr(SourcePos Pos, string Operator, Expr Left, Expr Right) : Expr(Pos);

/// <summary>A comparison chain: <c>a &lt; b &lt;= c</c>, <c>x in y</c>, <c>x not in y</c>.</summary>
internal sealed record CompareExpr(SourcePos Pos, Expr First, IReadOnlyList<(string Operator, Expr Operand)> Rest) : Expr(Pos);

/// <summary><c>a and b</c></summary>
internal sealed record AndExpr(SourcePos Pos, Expr Left, Expr Right) : Expr(Pos);

/// <summary><c>a or b</c></summary>
internal sealed record OrExpr(SourcePos Pos, Expr Left, Expr Right) : Expr(Pos);

/// <summary><c>not a</c></summary>
internal sealed record NotExpr(SourcePos Pos, Expr Operand) : Expr(Pos);

/// <summary><c>then if test else otherwise</c> (<c>otherwise</c> may be absent: undefined).</summary>
internal sealed record CondExpr(SourcePos Pos, Expr Test, Expr Then, Expr? Otherwise) : Expr(Pos);
