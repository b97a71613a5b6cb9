namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>
/// Recursive-descent parser from tokens to the AST, with jinja2's grammar and operator precedence
/// (loosest first): conditional <c>x if c else y</c>; <c>or</c>; <c>and</c>; <c>not</c>; comparisons
/// (<c>== != &lt; &lt;= &gt; &gt;= in</c>, <c>not in</c>, chained); <c>+ -</c>; <c>~</c>; <c>* / // %</c>;
/// <c>**</c> (left-associative); unary <c>- +</c>; then primaries with postfix <c>.attr [key] (args)</c>,
/// followed by <c>| filter</c> and <c>is test</c>. Unknown tags, filters and tests are rejected here, so an
/// unsupported template fails when it is loaded, not when a request comes.
/// </summary>
internal sealed class Parser
{
    /// <summary>How deeply expressions and blocks may nest (guards the stack against hostile templates).</summary>
    private const int MaxDepth = 200;

    private static readonly HashSet<string> UnsupportedTags = new(StringComparer.Ordinal)
    {
        "include", "import", "from", "extends", "block", "endblock", "autoescape", "endautoescape",
        "do", "trans", "endtrans", "pluralize",
    };

    private static readonly HashSet<string> CompareOperators = new(StringComparer.Ordinal)
    {
        "==", "!=", "<", "<=", ">", ">=",
    };

    private readonly List<Token> _tokens;
    private int _index;
    private int _depth;
    private int _loopDepth;

    private Parser(List<Token> tokens)
    {
        _tokens = tokens;
    }

    /// <summary>Parses a whole template.</summary>
    public static IReadOnlyList<Stmt> ParseTemplate(string source)
    {
        var parser = new Parser(Lexer.Tokenize(source));
        var body = parser.Subparse([], null);
        if (parser.Current.Kind != TokenKind.End)
        {
            throw parser.Error($"unexpected {parser.Current.Describe()}", parser.Current);
        }

        return body;
    }

    private Token Current => _tokens[_index];

    private Token Peek(int offset = 1) => _tokens[Math.Min(_index + offset, _tokens.Count - 1)];

    private Token Next() => _tokens[_index++];

    private static SourcePos PosOf(Token token) => new(token.Line, token.Column);

    private ChatTemplateException Error(string message, Token token) =>
        new(ChatTemplateErrorKind.Syntax, message, token.Line, token.Column);

    private Token Expect(TokenKind kind, string? value = null)
    {
        var token = Current;
        if (token.Kind != kind || (value is not null && token.Value != value))
        {
            var expected = value is not null ? $"'{value}'" : kind switch
            {
                TokenKind.Name => "a name",
                TokenKind.BlockEnd => "end of statement block",
                TokenKind.VariableEnd => "end of print statement",
                _ => kind.ToString(),
            };
            throw Error($"expected {expected}, got {token.Describe()}", token);
        }

        _index++;
        return token;
    }

    private bool SkipOperator(string op)
    {
        if (Current.IsOperator(op))
        {
            _index++;
            return true;
        }

        return false;
    }

    private bool SkipName(string name)
    {
        if (Current.IsName(name))
        {
            _index++;
            return true;
        }

        return false;
    }

    private void Enter(Token at)
    {
        if (++_depth > MaxDepth)
        {
            throw Error("the template nests too deeply", at);
        }
    }

    private void Leave() => _depth--;

    // ------------------------------------------------------------ statements

    /// <summary>
    /// Parses body nodes until a block tag whose name is one of <paramref name="endTags"/>; the stream is left on
    /// that name. <paramref name="innermost"/> names the open block, for error messages.
    /// </summary>
    private List<Stmt> Subparse(string[] endTags, string? innermost)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.Data:
                    _index++;
                    body.Add(new TextStmt(PosOf(token), token.Value));
                    break;
                case TokenKind.VariableBegin:
                    _index++;
                    var value = ParseTuple(withCondExpr: true);
                    Expect(TokenKind.VariableEnd);
                    body.Add(new PrintStmt(PosOf(token), value));
                    break;
                case TokenKind.BlockBegin:
                    _index++;
                    var name = Current;
                    if (name.Kind == TokenKind.Name && Array.IndexOf(endTags, name.Value) >= 0)
                    {
                        return body;
                    }

                    body.Add(ParseStatement(endTags, innermost));
                    Expect(TokenKind.BlockEnd);
                    break;
                case TokenKind.End:
                    if (endTags.Length > 0)
                    {
                        var looking = string.Join(" or ", endTags.Select(t => $"'{t}'"));
                        throw Error(
                            $"unexpected end of template; looking for the tag {looking} to close '{innermost}'", token);
                    }

                    return body;
                default:
                    throw Error($"unexpected {token.Describe()}", token);
            }
        }
    }

    private Stmt ParseStatement(string[] endTags, string? innermost)
    {
        var token = Current;
        if (token.Kind != TokenKind.Name)
        {
            throw Error("tag name expected", token);
        }

        Enter(token);
        try
        {
            _index++;
            switch (token.Value)
            {
                case "if": return ParseIf(token);
                case "for": return ParseFor(token);
                case "set": return ParseSet(token);
                case "macro": return ParseMacro(token);
                case "call": return ParseCallBlock(token);
                case "filter": return ParseFilterBlock(token);
                case "with": return ParseWith(token);
                case "generation":
                    {
                        Expect(TokenKind.BlockEnd);
                        var body = Subparse(["endgeneration"], "generation");
                        _index++;
                        return new GenerationStmt(PosOf(token), body);
                    }

                case "break" or "continue":
                    if (_loopDepth == 0)
                    {
                        throw Error($"'{token.Value}' outside of a loop", token);
                    }

                    return token.Value == "break" ? new BreakStmt(PosOf(token)) : new ContinueStmt(PosOf(token));
            }

            if (UnsupportedTags.Contains(token.Value))
            {
                throw Error(
                    $"the '{{% {token.Value} %}}' tag is not supported in chat templates (no template loading or extensions)",
                    token);
            }

            var hint = endTags.Length > 0
                ? $"; expected {string.Join(" or ", endTags.Select(t => $"'{t}'"))} to close '{innermost}'"
                : "";
            throw Error($"unknown tag '{token.Value}'{hint}", token);
        }
        finally
        {
            Leave();
        }
    }

    private IfStmt ParseIf(Token start)
    {
        var branches = new List<IfBranch>();
        IReadOnlyList<Stmt>? otherwise = null;
        var test = ParseTuple(withCondExpr: false);
        while (true)
        {
            Expect(TokenKind.BlockEnd);
            var body = Subparse(["elif", "else", "endif"], "if");
            branches.Add(new IfBranch(test, body));
            var tag = Next();
            if (tag.Value == "elif")
            {
                test = ParseTuple(withCondExpr: false);
                continue;
            }

            if (tag.Value == "else")
            {
                Expect(TokenKind.BlockEnd);
                otherwise = Subparse(["endif"], "if");
                _index++;
            }

            break;
        }

        return new IfStmt(PosOf(start), branches, otherwise);
    }

    private ForStmt ParseFor(Token start)
    {
        var target = ParseAssignTarget(allowTuple: true, allowAttribute: false, endName: "in");
        Expect(TokenKind.Name, "in");
        var iterable = ParseTuple(withCondExpr: false, extraEndName: "recursive");
        Expr? filter = null;
        if (SkipName("if"))
        {
            filter = ParseExpression();
        }

        if (Current.IsName("recursive"))
        {
            throw Error("recursive for loops are not supported", Current);
        }

        Expect(TokenKind.BlockEnd);
        _loopDepth++;
        var body = Subparse(["endfor", "else"], "for");
        _loopDepth--;
        IReadOnlyList<Stmt>? otherwise = null;
        if (Next().Value == "else")
        {
            Expect(TokenKind.BlockEnd);
            otherwise = Subparse(["endfor"], "for");
            _index++;
        }

        return new ForStmt(PosOf(start), target, iterable, filter, body, otherwise);
    }

    private Stmt ParseSet(Token start)
    {
        var target = ParseAssignTarget(allowTuple: true, allowAttribute: true, endName: null);
        if (SkipOperator("="))
        {
            return new SetStmt(PosOf(start), target, ParseTuple(withCondExpr: true));
        }

        if (target is not NameTarget)
        {
            throw Error("a block assignment ({% set x %}...{% endset %}) needs a plain variable name", Current);
        }

        var filters = new List<FilterCall>();
        while (SkipOperator("|"))
        {
            filters.Add(ParseFilterCall());
        }

        Expect(TokenKind.BlockEnd);
        var body = Subparse(["endset"], "set");
        _index++;
        return new SetBlockStmt(PosOf(start), target, filters, body);
    }

    private MacroStmt ParseMacro(Token start)
    {
        var name = Expect(TokenKind.Name).Value;
        var parameters = ParseSignature();
        Expect(TokenKind.BlockEnd);
        var savedLoopDepth = _loopDepth;
        _loopDepth = 0;
        var body = Subparse(["endmacro"], "macro");
        _loopDepth = savedLoopDepth;
        _index++;
        return new MacroStmt(PosOf(start), name, parameters, body);
    }

    private List<MacroParam> ParseSignature()
    {
        var parameters = new List<MacroParam>();
        Expect(TokenKind.Operator, "(");
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0)
            {
                Expect(TokenKind.Operator, ",");
                if (Current.IsOperator(")"))
                {
                    break;
                }
            }

            var name = Expect(TokenKind.Name);
            Expr? defaultValue = null;
            if (SkipOperator("="))
            {
                defaultValue = ParseExpression();
            }
            else if (parameters.Any(p => p.Default is not null))
            {
                throw Error("a parameter without a default follows one with a default", name);
            }

            parameters.Add(new MacroParam(name.Value, defaultValue));
        }

        _index++;
        return parameters;
    }

    private CallBlockStmt ParseCallBlock(Token start)
    {
        var callerParams = Current.IsOperator("(") ? ParseSignature() : [];
        var call = ParseExpression();
        if (call is not CallExpr callExpr)
        {
            throw Error("{% call %} expects a macro call, e.g. {% call my_macro() %}", start);
        }

        Expect(TokenKind.BlockEnd);
        var body = Subparse(["endcall"], "call");
        _index++;
        return new CallBlockStmt(PosOf(start), callExpr, callerParams, body);
    }

    private FilterBlockStmt ParseFilterBlock(Token start)
    {
        var filters = new List<FilterCall> { ParseFilterCall() };
        while (SkipOperator("|"))
        {
            filters.Add(ParseFilterCall());
        }

        Expect(TokenKind.BlockEnd);
        var body = Subparse(["endfilter"], "filter");
        _index++;
        return new FilterBlockStmt(PosOf(start), filters, body);
    }

    private WithStmt ParseWith(Token start)
    {
        var assignments = new List<(Target, Expr)>();
        while (Current.Kind != TokenKind.BlockEnd)
        {
            if (assignments.Count > 0)
            {
                Expect(TokenKind.Operator, ",");
            }

            var target = ParseAssignTarget(allowTuple: false, allowAttribute: false, endName: null);
            Expect(TokenKind.Operator, "=");
            assignments.Add((target, ParseExpression()));
        }

        Expect(TokenKind.BlockEnd);
        var body = Subparse(["endwith"], "with");
        _index++;
        return new WithStmt(PosOf(start), assignments, body);
    }

    private Target ParseAssignTarget(bool allowTuple, bool allowAttribute, string? endName)
    {
        var start = Current;
        var items = new List<Target>();
        var isTuple = false;
        while (true)
        {
            var name = Expect(TokenKind.Name);
            if (name.Value is "true" or "false" or "none" or "True" or "False" or "None")
            {
                throw Error($"cannot assign to '{name.Value}'", name);
            }

            if (allowAttribute && !isTuple && items.Count == 0 && Current.IsOperator("."))
            {
                _index++;
                var attribute = Expect(TokenKind.Name);
                return new AttributeTarget(PosOf(name), name.Value, attribute.Value);
            }

            items.Add(new NameTarget(PosOf(name), name.Value));
            if (!allowTuple || !Current.IsOperator(","))
            {
                break;
            }

            _index++;
            isTuple = true;
            if (Current.Kind != TokenKind.Name || (endName is not null && Current.IsName(endName)))
            {
                break;
            }
        }

        return isTuple ? new TupleTarget(PosOf(start), items) : items[0];
    }

    // ------------------------------------------------------------ expressions

    /// <summary>An expression, or several separated by commas (a tuple without parentheses).</summary>
    private Expr ParseTuple(bool withCondExpr, string? extraEndName = null, bool explicitParentheses = false)
    {
        var start = Current;
        var items = new List<Expr>();
        var isTuple = false;
        while (true)
        {
            if (items.Count > 0)
            {
                Expect(TokenKind.Operator, ",");
            }

            if (IsTupleEnd(extraEndName))
            {
                break;
            }

            items.Add(withCondExpr ? ParseExpression() : ParseOr());
            if (Current.IsOperator(","))
            {
                isTuple = true;
            }
            else
            {
                break;
            }
        }

        if (!isTuple)
        {
            if (items.Count == 1)
            {
                return items[0];
            }

            if (!explicitParentheses)
            {
                throw Error($"expected an expression, got {Current.Describe()}", Current);
            }
        }

        return new TupleExpr(PosOf(start), items);
    }

    private bool IsTupleEnd(string? extraEndName)
    {
        var token = Current;
        return token.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd or TokenKind.End
            || token.IsOperator(")")
            || (extraEndName is not null && token.IsName(extraEndName));
    }

    private Expr ParseExpression()
    {
        Enter(Current);
        try
        {
            var expr = ParseOr();
            while (Current.IsName("if"))
            {
                var at = Next();
                var test = ParseOr();
                Expr? otherwise = null;
                if (SkipName("else"))
                {
                    otherwise = ParseExpression();
                }

                expr = new CondExpr(PosOf(at), test, expr, otherwise);
            }

            return expr;
        }
        finally
        {
            Leave();
        }
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var at = Next();
            left = new OrExpr(PosOf(at), left, ParseAnd());
        }

        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var at = Next();
            left = new AndExpr(PosOf(at), left, ParseNot());
        }

        return left;
    }

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            var at = Next();
            Enter(at);
            try
            {
                return new NotExpr(PosOf(at), ParseNot());
            }
            finally
            {
                Leave();
            }
        }

        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var start = Current;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var token = Current;
            if (token.Kind == TokenKind.Operator && CompareOperators.Contains(token.Value))
            {
                _index++;
                rest.Add((token.Value, ParseMath1()));
            }
            else if (token.IsName("in"))
            {
                _index++;
                rest.Add(("in", ParseMath1()));
            }
            else if (token.IsName("not") && Peek().IsName("in"))
            {
                _index += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else
            {
                break;
            }
        }

        return rest.Count == 0 ? first : new CompareExpr(PosOf(start), first, rest);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Current.IsOperator("+") || Current.IsOperator("-"))
        {
            var op = Next();
            left = new BinaryExpr(PosOf(op), op.Value, left, ParseConcat());
        }

        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (Current.IsOperator("~"))
        {
            var op = Next();
            left = new BinaryExpr(PosOf(op), "~", left, ParseMath2());
        }

        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Current.Kind == TokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(PosOf(op), op.Value, left, ParsePow());
        }

        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(withFilter: true);
        while (Current.IsOperator("**"))
        {
            var op = Next();
            left = new BinaryExpr(PosOf(op), "**", left, ParseUnary(withFilter: true));
        }

        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        var token = Current;
        Enter(token);
        try
        {
            Expr node;
            if (token.IsOperator("-") || token.IsOperator("+"))
            {
                _index++;
                node = new UnaryExpr(PosOf(token), token.Value, ParseUnary(withFilter: false));
            }
            else
            {
                node = ParsePostfix(ParsePrimary());
            }

            return withFilter ? ParseFilterExpression(node) : node;
        }
        finally
        {
            Leave();
        }
    }

    private Expr ParsePrimary()
    {
        var token = Current;
        switch (token.Kind)
        {
            case TokenKind.Name:
                _index++;
                return token.Value switch
                {
                    "true" or "True" => new ConstExpr(PosOf(token), true),
                    "false" or "False" => new ConstExpr(PosOf(token), false),
                    "none" or "None" => new ConstExpr(PosOf(token), null),
                    _ => new NameExpr(PosOf(token), token.Value),
                };
            case TokenKind.String:
                {
                    _index++;
                    var text = (string)token.Literal!;
                    while (Current.Kind == TokenKind.String)
                    {
                        text += (string)Next().Literal!;
                    }

                    return new ConstExpr(PosOf(token), text);
                }

            case TokenKind.Integer or TokenKind.Float:
                _index++;
                return new ConstExpr(PosOf(token), token.Literal);
            case TokenKind.Operator when token.Value == "(":
                {
                    _index++;
                    var inner = ParseTuple(withCondExpr: true, explicitParentheses: true);
                    Expect(TokenKind.Operator, ")");
                    return inner;
                }

            case TokenKind.Operator when token.Value == "[":
                {
                    _index++;
                    var items = new List<Expr>();
                    while (!Current.IsOperator("]"))
                    {
                        if (items.Count > 0)
                        {
                            Expect(TokenKind.Operator, ",");
                            if (Current.IsOperator("]"))
                            {
                                break;
                            }
                        }

                        items.Add(ParseExpression());
                    }

                    _index++;
                    return new ListExpr(PosOf(token), items);
                }

            case TokenKind.Operator when token.Value == "{":
                {
                    _index++;
                    var items = new List<(Expr, Expr)>();
                    while (!Current.IsOperator("}"))
                    {
                        if (items.Count > 0)
                        {
                            Expect(TokenKind.Operator, ",");
                            if (Current.IsOperator("}"))
                            {
                                break;
                            }
                        }

                        var key = ParseExpression();
                        Expect(TokenKind.Operator, ":");
                        items.Add((key, ParseExpression()));
                    }

                    _index++;
                    return new DictExpr(PosOf(token), items);
                }

            default:
                throw Error($"unexpected {token.Describe()}", token);
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOperator("."))
            {
                _index++;
                var name = Current;
                if (name.Kind == TokenKind.Name)
                {
                    _index++;
                    node = new AttributeExpr(PosOf(token), node, name.Value);
                }
                else if (name.Kind == TokenKind.Integer)
                {
                    _index++;
                    node = new ItemExpr(PosOf(token), node, new ConstExpr(PosOf(name), name.Literal));
                }
                else
                {
                    throw Error($"expected an attribute name after '.', got {name.Describe()}", name);
                }
            }
            else if (token.IsOperator("["))
            {
                _index++;
                node = ParseSubscript(node, token);
            }
            else if (token.IsOperator("("))
            {
                node = new CallExpr(PosOf(token), node, ParseCallArgs());
            }
            else
            {
                return node;
            }
        }
    }

    private Expr ParseSubscript(Expr target, Token open)
    {
        Expr? ParseSlicePart() =>
            Current.IsOperator(":") || Current.IsOperator("]") ? null : ParseExpression();

        var start = ParseSlicePart();
        if (start is not null && Current.IsOperator("]"))
        {
            _index++;
            return new ItemExpr(PosOf(open), target, start);
        }

        if (start is not null && Current.IsOperator(","))
        {
            throw Error("tuple subscripts (x[a, b]) are not supported", Current);
        }

        Expect(TokenKind.Operator, ":");
        var stop = ParseSlicePart();
        Expr? step = null;
        if (SkipOperator(":"))
        {
            step = ParseSlicePart();
        }

        Expect(TokenKind.Operator, "]");
        return new SliceExpr(PosOf(open), target, start, stop, step);
    }

    private CallArgs ParseCallArgs()
    {
        Expect(TokenKind.Operator, "(");
        var positional = new List<Expr>();
        var keyword = new List<(string, Expr)>();
        Expr? extraPositional = null;
        Expr? extraKeyword = null;
        var count = 0;
        while (!Current.IsOperator(")"))
        {
            if (count++ > 0)
            {
                Expect(TokenKind.Operator, ",");
                if (Current.IsOperator(")"))
                {
                    break;
                }
            }

            var token = Current;
            if (extraKeyword is not null)
            {
                throw Error("no argument may follow **kwargs", token);
            }

            if (token.IsOperator("*"))
            {
                if (extraPositional is not null || keyword.Count > 0)
                {
                    throw Error("*args must come once, after the positional arguments", token);
                }

                _index++;
                extraPositional = ParseExpression();
            }
            else if (token.IsOperator("**"))
            {
                _index++;
                extraKeyword = ParseExpression();
            }
            else if (token.Kind == TokenKind.Name && Peek().IsOperator("="))
            {
                var name = Next().Value;
                _index++;
                if (keyword.Any(k => k.Item1 == name))
                {
                    throw Error($"keyword argument '{name}' repeated", token);
                }

                keyword.Add((name, ParseExpression()));
            }
            else
            {
                if (keyword.Count > 0 || extraPositional is not null)
                {
                    throw Error("positional argument follows keyword argument or *args", token);
                }

                positional.Add(ParseExpression());
            }
        }

        _index++;
        return new CallArgs(positional, keyword, extraPositional, extraKeyword);
    }

    private Expr ParseFilterExpression(Expr node)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOperator("|"))
            {
                _index++;
                node = new FilterExpr(PosOf(token), node, ParseFilterCall());
            }
            else if (token.IsName("is"))
            {
                _index++;
                node = ParseTest(node, token);
            }
            else if (token.IsOperator("("))
            {
                node = new CallExpr(PosOf(token), node, ParseCallArgs());
            }
            else
            {
                return node;
            }
        }
    }

    private FilterCall ParseFilterCall()
    {
        var name = Expect(TokenKind.Name);
        if (!BuiltinFilters.Exists(name.Value))
        {
            throw Error($"no filter named '{name.Value}'", name);
        }

        var args = Current.IsOperator("(") ? ParseCallArgs() : CallArgs.None;
        return new FilterCall(PosOf(name), name.Value, args);
    }

    private TestExpr ParseTest(Expr value, Token isToken)
    {
        var negated = SkipName("not");
        var name = Current;
        if (name.Kind != TokenKind.Name)
        {
            throw Error($"expected a test name after 'is', got {name.Describe()}", name);
        }

        _index++;
        var testName = name.Value;
        if (!BuiltinTests.Exists(testName))
        {
            throw Error($"no test named '{testName}'", name);
        }

        CallArgs args;
        var next = Current;
        if (next.IsOperator("("))
        {
            args = ParseCallArgs();
        }
        else if ((next.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                     || next.IsOperator("[") || next.IsOperator("{"))
                 && !next.IsName("else") && !next.IsName("or") && !next.IsName("and")
                 && !next.IsName("if") && !next.IsName("not") && !next.IsName("in"))
        {
            if (next.IsName("is"))
            {
                throw Error("tests cannot be chained with 'is'", next);
            }

            var argument = ParsePostfix(ParsePrimary());
            args = new CallArgs([argument], []);
        }
        else
        {
            args = CallArgs.None;
        }

        return new TestExpr(PosOf(isToken), value, testName, args, negated);
    }
}
