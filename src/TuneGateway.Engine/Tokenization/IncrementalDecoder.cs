namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// Turns generated token ids into text piece by piece for streaming. Every piece is whole
/// characters, and (without prompt context) the pieces plus <see cref="Flush"/> add up to exactly
/// <see cref="HfTokenizer.Decode"/> of all the ids.
/// </summary>
/// <remarks>
/// <para>Uses the prefix-offset/read-offset scheme of HF's and vLLM's detokenizers: text is decoded
/// over a short window that starts one emission back (<c>prefix</c>), and what the newest tokens
/// add to that window's text is emitted. Decoding from the same starting token twice makes
/// start-of-text rules (SentencePiece's stripped leading space, Metaspace's first token) cancel
/// out, so a continuation keeps its space.</para>
/// <para>Nothing is emitted while the window's text ends in U+FFFD (a byte-level token ended in the
/// middle of a character), nor right after a <c>&lt;0xNN&gt;</c> byte-fallback token: HF decodes
/// a whole run of byte tokens together and turns every byte of an invalid run into U+FFFD, so a run
/// is only final once a non-byte token follows. <see cref="Flush"/> emits whatever remains, with
/// U+FFFD for incomplete bytes as HF does.</para>
/// <para>With <c>promptIds</c> the first piece is the generated text as it reads after the prompt
/// (e.g. <c>" world"</c> rather than <c>"world"</c>). Not thread-safe: one instance per stream.</para>
/// </remarks>
public sealed class IncrementalDecoder
{
    /// <summary>How many prompt tokens are kept as context for the first generated token.</summary>
    private const int PromptContextTokens = 6;

    /// <summary>Tokens before the window are dropped once this many have accumulated.</summary>
    private const int CompactThreshold = 1024;

    private readonly HfTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _ids = [];
    private int _prefixOffset;
    private int _readOffset;

    internal IncrementalDecoder(HfTokenizer tokenizer, bool skipSpecialTokens, IReadOnlyList<int>? promptIds)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        if (promptIds is { Count: > 0 })
        {
            int start = Math.Max(0, promptIds.Count - PromptContextTokens);

            // Do not start the window inside a run of byte-fallback tokens.
            while (start > 0 && tokenizer.IsByteFallbackToken(promptIds[start - 1]))
            {
                start--;
            }

            for (int i = start; i < promptIds.Count; i++)
            {
                _ids.Add(promptIds[i]);
            }

            _readOffset = _ids.Count;
        }
    }

    /// <summary>Adds one generated token; returns the text it completes (often empty).</summary>
    public string Append(int tokenId)
    {
        _ids.Add(tokenId);
        return _tokenizer.IsByteFallbackToken(tokenId) ? string.Empty : Emit(final: false);
    }

    /// <summary>Returns all text not yet emitted, including incomplete characters as U+FFFD.</summary>
    public string Flush() => Emit(final: true);

    private string Emit(bool final)
    {
        if (_readOffset == _ids.Count)
        {
            return string.Empty;
        }

        string prefix = DecodeWindow(_prefixOffset, _readOffset);
        string full = DecodeWindow(_prefixOffset, _ids.Count);
        bool extends = full.Length > prefix.Length && full.StartsWith(prefix, StringComparison.Ordinal);
        if (!final && (!extends || full.EndsWith('\uFFFD')))
        {
            return string.Empty;
        }

        // Defensive: should the window's text ever not extend what was emitted, emit only what differs.
        int common = extends ? prefix.Length : CommonPrefixLength(prefix, full);
        string text = full[common..];
        _prefixOffset = _readOffset;
        _readOffset = _ids.Count;
        if (_prefixOffset >= CompactThreshold)
        {
            _ids.RemoveRange(0, _prefixOffset);
            _readOffset -= _prefixOffset;
            _prefixOffset = 0;
        }

        return text;
    }

    private string DecodeWindow(int start, int end) =>
        start == end ? string.Empty : _tokenizer.Decode(_ids.GetRange(start, end - start), _skipSpecialTokens);

    private static int CommonPrefixLength(string a, string b)
    {
        int n = Math.Min(a.Length, b.Length);
        int i = 0;
        while (i < n && a[i] == b[i])
        {
            i++;
        }

        return i;
    }
}
