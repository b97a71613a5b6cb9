using TuneGateway.Engine.Tokenization;

namespace TuneGateway.Engine.Structured;

/// <summary>
/// The model's vocabulary as bytes, for masking: each token id's raw bytes (see
/// <see cref="HfTokenizer.TokenBytes"/>) in a prefix tree, so that one walk over the tree checks
/// every token against an automaton state, sharing the work of common prefixes. Built once per
/// tokenizer; immutable.
/// </summary>
public sealed class TokenVocabulary
{
    private readonly byte[]?[] _bytes;

    private TokenVocabulary(byte[]?[] bytes, int size, IReadOnlyList<int> eosIds)
    {
        _bytes = bytes;
        Size = size;
        EosIds = eosIds;
        var root = new Builder();
        for (int id = 0; id < bytes.Length; id++)
        {
            if (bytes[id] is { Length: > 0 } b && !eosIds.Contains(id)) root.Add(b, id);
        }
        Root = root.Freeze();
        MaxTokenBytes = bytes.Max(b => b?.Length ?? 0);
    }

    /// <summary>Ids in the model's output (its logits' width; at least the tokenizer's).</summary>
    public int Size { get; }

    /// <summary>The ids that end a sequence (allowed only where the output is complete).</summary>
    public IReadOnlyList<int> EosIds { get; }

    public int MaxTokenBytes { get; }

    internal TrieNode Root { get; }

    /// <summary>A token's bytes, or null for special tokens, which constrained outputs never contain.</summary>
    public byte[]? Bytes(int id) => id >= 0 && id < _bytes.Length ? _bytes[id] : null;

    public static TokenVocabulary FromTokenizer(HfTokenizer tokenizer, int modelVocabSize, IReadOnlyList<int> eosIds)
    {
        var bytes = new byte[]?[tokenizer.VocabSize];
        for (int id = 0; id < bytes.Length; id++) bytes[id] = tokenizer.TokenBytes(id);
        return new TokenVocabulary(bytes, Math.Max(modelVocabSize, tokenizer.VocabSize), eosIds);
    }

    /// <summary>A vocabulary given as bytes per id (null: a special token), for tests and benchmarks.</summary>
    public static TokenVocabulary FromBytes(IReadOnlyList<byte[]?> bytes, IReadOnlyList<int> eosIds, int? size = null) =>
        new([.. bytes], size ?? bytes.Count, eosIds);

    /// <summary>A node of the prefix tree: the bytes that lead on, and the tokens whose bytes end here.</summary>
    internal sealed class TrieNode(byte[] keys, TrieNode[] children, int[] tokens)
    {
        public byte[] Keys { get; } = keys;
        public TrieNode[] Children { get; } = children;
        public int[] Tokens { get; } = tokens;
    }

    private sealed class Builder
    {
        private readonly SortedDictionary<byte, Builder> _children = [];
        private readonly List<int> _tokens = [];

        public void Add(byte[] bytes, int id)
        {
            var node = this;
            foreach (byte b in bytes)
            {
                if (!node._children.TryGetValue(b, out var child)) node._children[b] = child = new Builder();
                node = child;
            }
            node._tokens.Add(id);
        }

        public TrieNode Freeze() => new([.. _children.Keys], [.. _children.Values.Select(c => c.Freeze())], [.. _tokens]);
    }
}
