namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// A tokenizer could not be loaded: a file is missing or malformed, or it asks for something this
/// implementation does not support. The message names the file and, where one is at fault, the JSON
/// field (as a path such as <c>model.type</c> or <c>pre_tokenizer.pretokenizers[0].pattern</c>).
/// </summary>
public sealed class TokenizerLoadException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file being read.</param>
    /// <param name="field">The JSON field at fault, or <see langword="null"/> when the whole file is.</param>
    /// <param name="problem">What is wrong, as a sentence fragment.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public TokenizerLoadException(string filePath, string? field, string problem, Exception? innerException = null)
        : base(Format(filePath, field, problem), innerException)
    {
        FilePath = filePath;
        Field = field;
        Problem = problem;
    }

    /// <summary>The file being read when loading failed.</summary>
    public string FilePath { get; }

    /// <summary>The JSON field at fault, or <see langword="null"/>.</summary>
    public string? Field { get; }

    /// <summary>What is wrong, without the file and field.</summary>
    public string Problem { get; }

    private static string Format(string filePath, string? field, string problem) =>
        field is null
            ? $"Cannot load tokenizer file '{filePath}': {problem}"
            : $"Cannot load tokenizer file '{filePath}': field '{field}': {problem}";
}
