using System.Globalization;
using System.Text;

namespace TuneGateway.Engine.Chat.Jinja;

/// <summary>Kinds of tokens the lexer produces.</summary>
internal enum TokenKind
{
    /// <summary>Literal template text (already whitespace-controlled).</summary>
    Data,
    /// <summary><c>{{</c></summary>
    VariableBegin,
    /// <summary><c>}}</c></summary>
    VariableEnd,
    /// <summary><c>{%</c></summary>
    BlockBegin,
    /// <summary><c>%}</c></summary>
    BlockEnd,
    /// <summary>An identifier or keyword.</summary>
    Name,
    /// <summary>A string literal (value unescaped).</summary>
    String,
    /// <summary>An integer literal.</summary>
    Integer,
    /// <summary>A float literal.</summary>
    Float,
    /// <summary>An operator or punctuation, e.g. <c>+</c>, <c>//</c>, <c>(</c>.</summary>
    Operator,
    /// <summary>End of the template.</summary>
    End,
}

/// <summary>A token with its 1-based position in the template.</summary>
internal readonly record struct Token(TokenKind Kind, string Value, int Line, int Column, object? Literal = null)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;

    public bool IsName(string value) => Kind == TokenKind.Name && Value == value;

    public bool IsOperator(string value) => Kind == TokenKind.Operator && Value == value;

    /// <summary>How the token reads in an error message.</summary>
    public string Describe() => Kind switch
    {
        TokenKind.End => "end of template",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VariableEnd => "end of print statement",
        TokenKind.BlockBegin => "begin of statement block",
        TokenKind.VariableBegin => "begin of print statement",
        TokenKind.String => "string literal",
        TokenKind.Data => "template data",
        _ => $"'{Value}'",
    };
}

/// <summary>
/// Splits a template into tokens with the whitespace rules of Hugging Face's environment:
/// <c>trim_blocks</c> (the first newline after a block or comment tag is dropped), <c>lstrip_blocks</c>
/// (spaces and tabs before a block or comment tag at the start of a line are dropped), the <c>-</c> marker
/// (strip all whitespace on that side) and the <c>+</c> marker (keep it). Newlines are normalised to
/// <c>\n</c> and one trailing newline is removed, as jinja2 does with <c>keep_trailing_newline=False</c>.
/// Comments and <c>{% raw %}</c> blocks are resolved here.
/// </summary>
internal sealed class Lexer
{
    private const bool TrimBlocks = true;
    private const bool LStripBlocks = true;

    private static readonly string[] Operators =
    [
        "//", "**", "==", "!=", ">=", "<=",
        "+", "-", "*", "/", "%", "~", "<", ">", "=", ".", ":", "|", ",", ";", "(", ")", "[", "]", "{", "}",
    ];

    private readonly string _source;
    private readonly List<Token> _tokens = [];
    private int _pos;
    private int _line = 1;
    private int _lineStart;

    private Lexer(string source)
    {
        _source = source;
    }

    /// <summary>Tokenizes <paramref name="source"/>; throws <see cref="ChatTemplateException"/> on lexical errors.</summary>
    public static List<Token> Tokenize(string source)
    {
        var lexer = new Lexer(Normalize(source));
        lexer.Run();
        return lexer._tokens;
    }

    /// <summary>Newlines to <c>\n</c>, and one trailing newline removed.</summary>
    internal static string Normalize(string source)
    {
        var text = source.Contains('\r', StringComparison.Ordinal)
            ? source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n')
            : source;
        return text.EndsWith('\n') ? text[..^1] : text;
    }

    private int Column => _pos - _lineStart + 1;

    private void Run()
    {
        // Whether the previous token ended a line (lstrip_blocks then applies to text without a newline).
        var lineStarting = true;
        while (_pos < _source.Length)
        {
            var tagStart = FindTagStart(_pos);
            if (tagStart < 0)
            {
                EmitData(_source[_pos..], _line, Column);
                Advance(_source.Length);
                break;
            }

            var opener = _source[tagStart + 1];
            var signIndex = tagStart + 2;
            var sign = signIndex < _source.Length && _source[signIndex] is '-' or '+' ? _source[signIndex] : '\0';
            var text = _source[_pos..tagStart];
            if (sign == '-')
            {
                text = PyText.RStrip(text);
            }
            else if (sign != '+' && LStripBlocks && opener != '{')
            {
                var lineBegin = text.LastIndexOf('\n') + 1;
                if ((lineBegin > 0 || lineStarting) && lineBegin < text.Length && IsAllWhitespace(text.AsSpan(lineBegin)))
                {
                    text = text[..lineBegin];
                }
            }

            EmitData(text, _line, Column);
            Advance(tagStart);
            var tagLine = _line;
            var tagColumn = Column;
            Advance(tagStart + 2 + (sign == '\0' ? 0 : 1));

            switch (opener)
            {
                case '#':
                    lineStarting = SkipComment(tagLine, tagColumn);
                    break;
                case '%' when IsRawBegin(out var rawBodyStart):
                    Advance(rawBodyStart);
                    lineStarting = ReadRaw(tagLine, tagColumn);
                    break;
                case '%':
                    _tokens.Add(new Token(TokenKind.BlockBegin, "{%", tagLine, tagColumn));
                    lineStarting = ReadTagBody(isBlock: true, tagLine, tagColumn);
                    break;
                default:
                    _tokens.Add(new Token(TokenKind.VariableBegin, "{{", tagLine, tagColumn));
                    lineStarting = ReadTagBody(isBlock: false, tagLine, tagColumn);
                    break;
            }
        }

        _tokens.Add(new Token(TokenKind.End, "", _line, Column));
    }

    private int FindTagStart(int from)
    {
        var index = from;
        while (true)
        {
            index = _source.IndexOf('{', index);
            if (index < 0 || index + 1 >= _source.Length)
            {
                return -1;
            }

            if (_source[index + 1] is '{' or '%' or '#')
            {
                return index;
            }

            index++;
        }
    }

    private void EmitData(string text, int line, int column)
    {
        if (text.Length > 0)
        {
            _tokens.Add(new Token(TokenKind.Data, text, line, column));
        }
    }

    /// <summary>Moves to <paramref name="target"/>, keeping line and column up to date.</summary>
    private void Advance(int target)
    {
        for (var i = _pos; i < target; i++)
        {
            if (_source[i] == '\n')
            {
                _line++;
                _lineStart = i + 1;
            }
        }

        _pos = target;
    }

    private static bool IsAllWhitespace(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (!PyText.IsSpace(c))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// After a closing tag: <c>-</c> strips all following whitespace, <c>+</c> keeps it, and otherwise
    /// trim_blocks drops one newline (block and comment tags only). Returns whether the consumed text ended a line.
    /// </summary>
    private bool AfterTagEnd(char sign, bool trimNewline)
    {
        var start = _pos;
        if (sign == '-')
        {
            var end = _pos;
            while (end < _source.Length && PyText.IsSpace(_source[end]))
            {
                end++;
            }

            Advance(end);
        }
        else if (sign != '+' && trimNewline && TrimBlocks && _pos < _source.Length && _source[_pos] == '\n')
        {
            Advance(_pos + 1);
        }

        return _pos > start && _source[_pos - 1] == '\n';
    }

    private bool SkipComment(int line, int column)
    {
        var end = _source.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0)
        {
            throw new ChatTemplateException(ChatTemplateErrorKind.Syntax, "missing end of comment tag", line, column);
        }

        var sign = end > _pos && _source[end - 1] is '-' or '+' ? _source[end - 1] : '\0';
        Advance(end + 2);
        return AfterTagEnd(sign, trimNewline: true);
    }

    /// <summary>Whether the block tag just opened is <c>{% raw %}</c>; if so, where the raw text starts.</summary>
    private bool IsRawBegin(out int bodyStart)
    {
        bodyStart = 0;
        var i = SkipSpaces(_pos);
        if (string.CompareOrdinal(_source, i, "raw", 0, 3) != 0)
        {
            return false;
        }

        i = SkipSpaces(i + 3);
        var sign = i < _source.Length && _source[i] == '-' ? '-' : '\0';
        var close = sign == '\0' ? i : i + 1;
        if (string.CompareOrdinal(_source, close, "%}", 0, 2) != 0)
        {
            return false;
        }

        Advance(close + 2);
        // After {% raw -%} the following whitespace goes; unlike other tags, trim_blocks does not apply here.
        AfterTagEnd(sign, trimNewline: false);
        bodyStart = _pos;
        return true;
    }

    private bool ReadRaw(int line, int column)
    {
        var search = _pos;
        while (true)
        {
            var tag = _source.IndexOf("{%", search, StringComparison.Ordinal);
            if (tag < 0)
            {
                throw new ChatTemplateException(ChatTemplateErrorKind.Syntax, "missing end of raw directive", line, column);
            }

            var i = tag + 2;
            var openSign = i < _source.Length && _source[i] is '-' or '+' ? _source[i] : '\0';
            i = SkipSpaces(openSign == '\0' ? i : i + 1);
            if (string.CompareOrdinal(_source, i, "endraw", 0, 6) == 0)
            {
                i = SkipSpaces(i + 6);
                var closeSign = i < _source.Length && _source[i] is '-' or '+' ? _source[i] : '\0';
                var close = closeSign == '\0' ? i : i + 1;
                if (string.CompareOrdinal(_source, close, "%}", 0, 2) == 0)
                {
                    var text = _source[_pos..tag];
                    if (openSign == '-')
                    {
                        text = PyText.RStrip(text);
                    }
                    else if (openSign != '+' && LStripBlocks)
                    {
                        var lineBegin = text.LastIndexOf('\n') + 1;
                        if (lineBegin > 0 && lineBegin < text.Length && IsAllWhitespace(text.AsSpan(lineBegin)))
                        {
                            text = text[..lineBegin];
                        }
                    }

                    EmitData(text, _line, Column);
                    Advance(close + 2);
                    return AfterTagEnd(closeSign, trimNewline: true);
                }
            }

            search = tag + 2;
        }
    }

    private int SkipSpaces(int i)
    {
        while (i < _source.Length && PyText.IsSpace(_source[i]))
        {
            i++;
        }

        return i;
    }

    /// <summary>Reads the expression tokens of a tag up to and including its closing delimiter.</summary>
    private bool ReadTagBody(bool isBlock, int tagLine, int tagColumn)
    {
        var closer = isBlock ? '%' : '}';
        var brackets = new Stack<char>();
        while (true)
        {
            _pos = SkipSpacesTracked(_pos);
            if (_pos >= _source.Length)
            {
                var what = isBlock ? "end of statement block" : "end of print statement";
                throw new ChatTemplateException(
                    ChatTemplateErrorKind.Syntax, $"unexpected end of template, expected '{what}'", tagLine, tagColumn);
            }

            var c = _source[_pos];
            if (brackets.Count == 0)
            {
                // A closing delimiter, possibly with a whitespace-control sign.
                var sign = c is '-' or '+' ? c : '\0';
                var at = sign == '\0' ? _pos : _pos + 1;
                if (at + 1 < _source.Length && _source[at] == closer && _source[at + 1] == '}'
                    && (sign != '+' || isBlock))
                {
                    _tokens.Add(new Token(isBlock ? TokenKind.BlockEnd : TokenKind.VariableEnd,
                        isBlock ? "%}" : "}}", _line, Column));
                    Advance(at + 2);
                    return AfterTagEnd(sign, trimNewline: isBlock);
                }
            }

            if (c is '\'' or '"')
            {
                ReadString(c);
                continue;
            }

            if (char.IsAsciiDigit(c))
            {
                ReadNumber();
                continue;
            }

            if (char.IsLetter(c) || c == '_')
            {
                var start = _pos;
                var end = _pos + 1;
                while (end < _source.Length && (char.IsLetterOrDigit(_source[end]) || _source[end] == '_'))
                {
                    end++;
                }

                _tokens.Add(new Token(TokenKind.Name, _source[start..end], _line, Column));
                Advance(end);
                continue;
            }

            var op = MatchOperator();
            if (op is null)
            {
                throw new ChatTemplateException(
                    ChatTemplateErrorKind.Syntax, $"unexpected character '{c}'", _line, Column);
            }

            switch (op)
            {
                case "(" or "[" or "{":
                    brackets.Push(op[0]);
                    break;
                case ")" or "]" or "}":
                    var expected = op switch { ")" => '(', "]" => '[', _ => '{' };
                    if (brackets.Count == 0 || brackets.Pop() != expected)
                    {
                        throw new ChatTemplateException(
                            ChatTemplateErrorKind.Syntax, $"unexpected '{op}'", _line, Column);
                    }

                    break;
            }

            _tokens.Add(new Token(TokenKind.Operator, op, _line, Column));
            Advance(_pos + op.Length);
        }
    }

    private int SkipSpacesTracked(int i)
    {
        var end = SkipSpaces(i);
        Advance(end);
        return end;
    }

    private string? MatchOperator()
    {
        foreach (var op in Operators)
        {
            if (string.CompareOrdinal(_source, _pos, op, 0, op.Length) == 0)
            {
                return op;
            }
        }

        return null;
    }

    private void ReadString(char quote)
    {
        var line = _line;
        var column = Column;
        var builder = new StringBuilder();
        var i = _pos + 1;
        while (true)
        {
            if (i >= _source.Length)
            {
                throw new ChatTemplateException(ChatTemplateErrorKind.Syntax, "unterminated string literal", line, column);
            }

            var c = _source[i];
            if (c == quote)
            {
                i++;
                break;
            }

            if (c == '\\' && i + 1 < _source.Length)
            {
                i = ReadEscape(i + 1, builder, line, column);
                continue;
            }

            builder.Append(c);
            i++;
        }

        var value = builder.ToString();
        _tokens.Add(new Token(TokenKind.String, value, line, column, value));
        Advance(i);
    }

    /// <summary>Python's unicode-escape rules (what jinja2 applies to string literals).</summary>
    private int ReadEscape(int i, StringBuilder builder, int line, int column)
    {
        var c = _source[i];
        switch (c)
        {
            case '\n':
                return i + 1; // backslash-newline is a line continuation
            case '\\': builder.Append('\\'); return i + 1;
            case '\'': builder.Append('\''); return i + 1;
            case '"': builder.Append('"'); return i + 1;
            case 'n': builder.Append('\n'); return i + 1;
            case 't': builder.Append('\t'); return i + 1;
            case 'r': builder.Append('\r'); return i + 1;
            case 'b': builder.Append('\b'); return i + 1;
            case 'f': builder.Append('\f'); return i + 1;
            case 'v': builder.Append('\v'); return i + 1;
            case 'a': builder.Append('\a'); return i + 1;
            case 'x':
                return AppendHexEscape(i + 1, 2, builder, line, column);
            case 'u':
                return AppendHexEscape(i + 1, 4, builder, line, column);
            case 'U':
                return AppendHexEscape(i + 1, 8, builder, line, column);
            case >= '0' and <= '7':
                var end = i;
                var code = 0;
                while (end < _source.Length && end < i + 3 && _source[end] is >= '0' and <= '7')
                {
                    code = (code * 8) + (_source[end] - '0');
                    end++;
                }

                builder.Append((char)code);
                return end;
            default:
                // Unknown escapes stay as written, backslash included.
                builder.Append('\\');
                return i;
        }
    }

    private int AppendHexEscape(int start, int digits, StringBuilder builder, int line, int column)
    {
        if (start + digits > _source.Length
            || !int.TryParse(_source.AsSpan(start, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code)
            || code > 0x10FFFF || code < 0)
        {
            throw new ChatTemplateException(ChatTemplateErrorKind.Syntax, "invalid escape sequence in string literal", line, column);
        }

        builder.Append(char.ConvertFromUtf32(code is >= 0xD800 and <= 0xDFFF ? 0xFFFD : code));
        return start + digits;
    }

    private void ReadNumber()
    {
        var line = _line;
        var column = Column;
        var start = _pos;
        var i = ReadDigits(_pos);
        var isFloat = false;
        if (i + 1 < _source.Length && _source[i] == '.' && char.IsAsciiDigit(_source[i + 1]))
        {
            isFloat = true;
            i = ReadDigits(i + 1);
        }

        if (i < _source.Length && _source[i] is 'e' or 'E')
        {
            var j = i + 1;
            if (j < _source.Length && _source[j] is '+' or '-')
            {
                j++;
            }

            if (j < _source.Length && char.IsAsciiDigit(_source[j]))
            {
                isFloat = true;
                i = ReadDigits(j);
            }
        }

        var text = _source[start..i].Replace("_", "", StringComparison.Ordinal);
        object literal;
        if (isFloat)
        {
            literal = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
        }
        else if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var integer))
        {
            literal = integer;
        }
        else
        {
            throw new ChatTemplateException(ChatTemplateErrorKind.Syntax, $"integer literal {text} is too large", line, column);
        }

        _tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, _source[start..i], line, column, literal));
        Advance(i);
    }

    /// <summary>Digits with single underscores between them, as in <c>1_000</c>.</summary>
    private int ReadDigits(int i)
    {
        while (i < _source.Length)
        {
            if (char.IsAsciiDigit(_source[i]))
            {
                i++;
            }
            else if (_source[i] == '_' && i + 1 < _source.Length && char.IsAsciiDigit(_source[i + 1]) && i > 0 && char.IsAsciiDigit(_source[i - 1]))
            {
                i++;
            }
            else
            {
                break;
            }
        }

        return i;
    }
}
