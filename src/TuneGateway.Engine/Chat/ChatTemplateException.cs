namespace TuneGateway.Engine.Chat;

/// <summary>What went wrong with a chat template.</summary>
public enum ChatTemplateErrorKind
{
    /// <summary>The template text is not valid Jinja, or uses a construct this interpreter does not support.</summary>
    Syntax,

    /// <summary>Rendering failed: a type error, an undefined value used where a value is needed, a limit reached.</summary>
    Render,

    /// <summary>The template itself refused the input by calling <c>raise_exception(message)</c>.</summary>
    Raised,

    /// <summary>The template could not be found or read (model directory, file).</summary>
    Load,
}

/// <summary>
/// A chat template could not be loaded, parsed or rendered. <see cref="Exception.Message"/> is meant to be
/// returned to the client as is (an HTTP 400): for <see cref="ChatTemplateErrorKind.Raised"/> it is exactly the
/// message the template passed to <c>raise_exception</c>; otherwise it names the problem and, where known, the
/// line and column in the template.
/// </summary>
public sealed class ChatTemplateException : Exception
{
    /// <summary>Creates a render error with this exact message.</summary>
    public ChatTemplateException(string message)
        : base(message)
    {
        Kind = ChatTemplateErrorKind.Render;
        Detail = message;
    }

    /// <summary>Creates a load error (a file that cannot be read) with its cause.</summary>
    public ChatTemplateException(string message, Exception innerException)
        : base(message, innerException)
    {
        Kind = ChatTemplateErrorKind.Load;
        Detail = message;
    }

    /// <summary>Creates an exception of the given kind, with the position in the template where known.</summary>
    public ChatTemplateException(ChatTemplateErrorKind kind, string message, int? line = null, int? column = null)
        : base(Format(kind, message, line, column))
    {
        Kind = kind;
        Line = line;
        Column = column;
        Detail = message;
    }

    /// <summary>Creates an exception without a message (for serializers and the like).</summary>
    public ChatTemplateException()
    {
    }

    /// <summary>What kind of failure this is.</summary>
    public ChatTemplateErrorKind Kind { get; }

    /// <summary>1-based line in the template, where known.</summary>
    public int? Line { get; }

    /// <summary>1-based column in the template, where known (syntax errors).</summary>
    public int? Column { get; }

    /// <summary>The message without the position prefix.</summary>
    public string? Detail { get; }

    private static string Format(ChatTemplateErrorKind kind, string message, int? line, int? column)
    {
        if (kind is ChatTemplateErrorKind.Raised or ChatTemplateErrorKind.Load)
        {
            return message;
        }

        var where = (line, column) switch
        {
            ({ } l, { } c) => $" at line {l}, column {c}",
            ({ } l, null) => $" at line {l}",
            _ => "",
        };
        var what = kind == ChatTemplateErrorKind.Syntax ? "Chat template syntax error" : "Chat template error";
        return $"{what}{where}: {message}";
    }
}
