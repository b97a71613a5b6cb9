using System.Collections.Concurrent;

namespace TuneGateway.Engine.Structured;

/// <summary>
/// Constrained decoding for one served model: compiles grammars against its vocabulary (built on
/// first use: decoding every token id once) and keeps the compiled ones, so that requests with the
/// same schema share their cached masks. Thread-safe.
/// </summary>
public sealed class StructuredOutputs
{
    private readonly Lazy<TokenVocabulary> _vocabulary;
    private readonly ConcurrentDictionary<string, CompiledGrammar> _grammars = new(StringComparer.Ordinal);

    public StructuredOutputs(Func<TokenVocabulary> vocabulary, StructuredOutputOptions? options = null)
    {
        _vocabulary = new Lazy<TokenVocabulary>(vocabulary, LazyThreadSafetyMode.ExecutionAndPublication);
        Options = options ?? new StructuredOutputOptions();
    }

    public StructuredOutputOptions Options { get; }

    public TokenVocabulary Vocabulary => _vocabulary.Value;

    /// <summary>The compiled grammar for <paramref name="part"/>; throws <see cref="SchemaNotSupportedException"/>.</summary>
    public CompiledGrammar Compile(GrammarPart part)
    {
        string key = part.CacheKey();
        if (_grammars.TryGetValue(key, out var known)) return known;
        var grammar = new CompiledGrammar(part.Compile(Options, new AnyValues(Options)), Vocabulary, Options);
        // Simple bound: when full, start over (schemas in use are recompiled on their next request).
        if (_grammars.Count >= Options.GrammarCacheEntries) _grammars.Clear();
        return _grammars.GetOrAdd(key, grammar);
    }
}
