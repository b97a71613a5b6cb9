namespace TuneGateway.Engine.Structured;

/// <summary>Bounds of constrained decoding (JSON outputs and tool calls).</summary>
public sealed record StructuredOutputOptions
{
    /// <summary>
    /// Whitespace bytes allowed in a row between two tokens of JSON (and before the value): enough
    /// for indented output a few levels deep, few enough that a model cannot spin on spaces.
    /// </summary>
    public int MaxWhitespace { get; init; } = 12;

    /// <summary>Whitespace allowed after the complete value, before end-of-sequence becomes the only choice.</summary>
    public int MaxTrailingWhitespace { get; init; } = 1;

    /// <summary>Digits per integer or fraction part: beyond ~15 a double cannot hold them, and runs of digits are a loop too.</summary>
    public int MaxNumberDigits { get; init; } = 15;

    /// <summary>Nesting of free-form values (json_object, schemas without a type) before only scalars are allowed.</summary>
    public int MaxAnyDepth { get; init; } = 6;

    /// <summary>Masks cached per grammar, by automaton state (each costs vocabulary/8 bytes).</summary>
    public int MaskCacheEntries { get; init; } = 2048;

    /// <summary>Compiled grammars kept (by schema text), so that repeated schemas also reuse their masks.</summary>
    public int GrammarCacheEntries { get; init; } = 64;
}
