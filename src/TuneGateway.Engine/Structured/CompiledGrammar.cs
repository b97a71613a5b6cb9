using System.Collections.Concurrent;
using TuneGateway.Engine.Inference;

namespace TuneGateway.Engine.Structured;

/// <summary>
/// A grammar compiled against one vocabulary: starts request states and computes their masks,
/// caching each mask by automaton state (states inside an unbounded string, between array items
/// and so on repeat, so most steps after the first few are a lookup). Thread-safe: requests on the
/// same schema share one instance.
/// </summary>
public sealed class CompiledGrammar
{
    private readonly GrammarNode _root;
    private readonly AutomatonLimits _limits;
    private readonly int _cacheEntries;
    private readonly ConcurrentDictionary<StateKey, TokenMask> _masks = new();
    private long _hits, _misses;

    internal CompiledGrammar(GrammarNode root, TokenVocabulary vocabulary, StructuredOutputOptions options)
    {
        _root = root;
        Vocabulary = vocabulary;
        _limits = new AutomatonLimits(options.MaxWhitespace, options.MaxTrailingWhitespace);
        _cacheEntries = options.MaskCacheEntries;
    }

    public TokenVocabulary Vocabulary { get; }

    /// <summary>Masks found in the cache and computed, since the grammar was compiled.</summary>
    public (long Hits, long Misses) CacheCounts => (Interlocked.Read(ref _hits), Interlocked.Read(ref _misses));

    /// <summary>A fresh state for one request's output.</summary>
    public ConstraintState Start() => new(this, [new FrameStack(new RootFrame(_root, false, 0), null)]);

    internal AutomatonLimits Limits => _limits;

    /// <summary>The states reached from <paramref name="states"/> over <paramref name="bytes"/>.</summary>
    internal IReadOnlyList<FrameStack> Advance(IReadOnlyList<FrameStack> states, ReadOnlySpan<byte> bytes)
    {
        var current = states;
        foreach (byte b in bytes)
        {
            var next = new List<FrameStack>();
            StepAll(current, b, next);
            if (next.Count == 0) return [];
            current = next;
        }
        return current;
    }

    internal TokenMask Mask(IReadOnlyList<FrameStack> states)
    {
        var key = new StateKey(states);
        if (_masks.TryGetValue(key, out var cached))
        {
            Interlocked.Increment(ref _hits);
            return cached;
        }
        Interlocked.Increment(ref _misses);
        var mask = ComputeMask(states);
        if (_masks.Count < _cacheEntries) _masks.TryAdd(key, mask);
        return mask;
    }

    /// <summary>
    /// Walks the vocabulary's prefix tree alongside the automaton: a subtree is entered only while
    /// some state survives its bytes, so a mask costs the number of live prefixes, not
    /// vocabulary × token length.
    /// </summary>
    private TokenMask ComputeMask(IReadOnlyList<FrameStack> states)
    {
        var mask = new TokenMask(Vocabulary.Size);
        var scratch = new List<FrameStack>[Vocabulary.MaxTokenBytes + 1];
        for (int i = 0; i < scratch.Length; i++) scratch[i] = [];
        Walk(Vocabulary.Root, states, 0, scratch, mask);
        bool complete = states.Any(Automaton.Accepts);
        // A dead end (nothing can continue) also gets end-of-sequence, so that the row ends; the state says it is incomplete.
        if (complete || mask.Count == 0)
        {
            foreach (int eos in Vocabulary.EosIds) mask.Set(eos);
        }
        return mask;
    }

    private void Walk(TokenVocabulary.TrieNode node, IReadOnlyList<FrameStack> states, int depth, List<FrameStack>[] scratch, TokenMask mask)
    {
        var next = scratch[depth];
        for (int i = 0; i < node.Keys.Length; i++)
        {
            next.Clear();
            StepAll(states, node.Keys[i], next);
            if (next.Count == 0) continue;
            var child = node.Children[i];
            foreach (int token in child.Tokens) mask.Set(token);
            if (child.Keys.Length > 0) Walk(child, next, depth + 1, scratch, mask);
        }
    }

    private void StepAll(IReadOnlyList<FrameStack> states, byte b, List<FrameStack> output)
    {
        foreach (var state in states)
        {
            int before = output.Count;
            Automaton.Step(state, b, _limits, output);
            // Alternatives often meet again (two anyOf branches reading the same string): keep each state once.
            for (int i = output.Count - 1; i >= before; i--)
            {
                for (int j = 0; j < i; j++)
                {
                    if (output[j].Equals(output[i]))
                    {
                        output.RemoveAt(i);
                        break;
                    }
                }
            }
        }
    }

    internal static bool Accepts(IReadOnlyList<FrameStack> states) => states.Any(Automaton.Accepts);

    /// <summary>A set of states as a cache key (order does not matter).</summary>
    private sealed class StateKey : IEquatable<StateKey>
    {
        private readonly FrameStack[] _states;
        private readonly int _hash;

        public StateKey(IReadOnlyList<FrameStack> states)
        {
            _states = [.. states.OrderBy(s => s.GetHashCode())];
            foreach (var s in _states) _hash = HashCode.Combine(_hash, s.GetHashCode());
        }

        public bool Equals(StateKey? other) => other is not null && other._hash == _hash && _states.AsSpan().SequenceEqual(other._states);
        public override bool Equals(object? obj) => Equals(obj as StateKey);
        public override int GetHashCode() => _hash;
    }
}

/// <summary>One request's place in its grammar (the <see cref="ITokenConstraint"/> the scheduler drives).</summary>
public sealed class ConstraintState : ITokenConstraint
{
    private readonly CompiledGrammar _grammar;
    private IReadOnlyList<FrameStack> _states;

    internal ConstraintState(CompiledGrammar grammar, IReadOnlyList<FrameStack> states)
    {
        _grammar = grammar;
        _states = states;
    }

    public bool IsComplete => CompiledGrammar.Accepts(_states);

    /// <summary>No valid output continues from here.</summary>
    public bool IsDead => _states.Count == 0;

    public TokenMask AllowedTokens() => _grammar.Mask(_states);

    public void Accept(int tokenId)
    {
        if (_grammar.Vocabulary.EosIds.Contains(tokenId)) return;
        _states = _grammar.Vocabulary.Bytes(tokenId) is { } bytes ? _grammar.Advance(_states, bytes) : [];
    }

    /// <summary>Advances past raw text (tests: does this text fit the grammar?).</summary>
    public void AcceptText(string text) => _states = _grammar.Advance(_states, System.Text.Encoding.UTF8.GetBytes(text));
}
