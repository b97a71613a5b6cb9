using System.Globalization;
using System.Text;

namespace TuneGateway.Engine.Tokenization;

/// <summary>An entry of <c>added_tokens</c> in <c>tokenizer.json</c>.</summary>
/// <param name="Id">The token id.</param>
/// <param name="Content">The exact text of the token.</param>
/// <param name="Special">Whether it is a special token (skipped by <c>skip_special_tokens</c>).</param>
/// <param name="SingleWord">Match only when not inside a word.</param>
/// <param name="LStrip">Also swallow the white space before the match.</param>
/// <param name="RStrip">Also swallow the white space after the match.</param>
/// <param name="Normalized">Match against normalized text (true) or the raw input (false).</param>
internal sealed record AddedToken(
    int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);

/// <summary>A stretch of text: either plain text for the model or one added token.</summary>
internal readonly record struct TextSegment(int Start, int End, AddedToken? Token);

/// <summary>
/// Finds added tokens in text the way HF's <c>AddedVocabulary</c> does: leftmost-longest,
/// non-overlapping matches (its Aho-Corasick search), then the <c>single_word</c>,
/// <c>lstrip</c> and <c>rstrip</c> rules.
/// </summary>
/// <remarks>
/// Hand-written: Microsoft.ML.Tokenizers splits on special tokens by exact string only and has no
/// notion of these flags or of matching before/after normalization.
/// </remarks>
internal sealed class AddedTokenMatcher
{
    private readonly Node _root = new();

    /// <param name="patterns">The text to look for and the token it stands for.</param>
    public AddedTokenMatcher(IEnumerable<(string Pattern, AddedToken Token)> patterns)
    {
        foreach ((string pattern, AddedToken token) in patterns)
        {
            if (pattern.Length == 0)
            {
                continue;
            }

            Node node = _root;
            foreach (char c in pattern)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out Node? child))
                {
                    child = new Node();
                    node.Children[c] = child;
                }

                node = child;
            }

            // Should two entries share one text, the later one wins.
            node.Token = token;
            IsEmpty = false;
        }
    }

    public bool IsEmpty { get; private set; } = true;

    /// <summary>Cuts <paramref name="text"/> into plain stretches and added tokens, in order.</summary>
    public void Split(string text, List<TextSegment> output)
    {
        int plainStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            (int length, AddedToken? token) = LongestAt(text, i);
            if (token is null)
            {
                i++;
                continue;
            }

            int start = i, stop = i + length;
            i = stop;
            if (token.SingleWord && (EndsWithWordChar(text, start) || StartsWithWordChar(text, stop)))
            {
                continue;
            }

            if (token.LStrip)
            {
                int newStart = start;
                while (newStart > 0 && char.IsWhiteSpace(text[newStart - 1]))
                {
                    newStart--;
                }

                // Spaces already taken by the previous match stay with it.
                start = Math.Max(newStart, plainStart);
            }

            if (token.RStrip)
            {
                while (stop < text.Length && char.IsWhiteSpace(text[stop]))
                {
                    stop++;
                }

                i = stop;
            }

            if (start > plainStart)
            {
                output.Add(new TextSegment(plainStart, start, null));
            }

            output.Add(new TextSegment(start, stop, token));
            plainStart = stop;
        }

        if (plainStart < text.Length)
        {
            output.Add(new TextSegment(plainStart, text.Length, null));
        }
    }

    private (int Length, AddedToken? Token) LongestAt(string text, int start)
    {
        Node node = _root;
        (int, AddedToken?) best = (0, null);
        for (int j = start; j < text.Length; j++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[j], out Node? next))
            {
                break;
            }

            node = next;
            if (node.Token is not null)
            {
                best = (j - start + 1, node.Token);
            }
        }

        return best;
    }

    /// <summary>Whether the code point before <paramref name="index"/> is a word character (regex <c>\w</c>).</summary>
    private static bool EndsWithWordChar(string text, int index) =>
        index > 0 && Rune.DecodeLastFromUtf16(text.AsSpan(0, index), out Rune rune, out _) == System.Buffers.OperationStatus.Done
            && IsWordRune(rune);

    /// <summary>Whether the code point at <paramref name="index"/> is a word character (regex <c>\w</c>).</summary>
    private static bool StartsWithWordChar(string text, int index) =>
        index < text.Length && Rune.DecodeFromUtf16(text.AsSpan(index), out Rune rune, out _) == System.Buffers.OperationStatus.Done
            && IsWordRune(rune);

    /// <summary>Unicode <c>\w</c>: letters, marks, decimal digits, letter numbers, connector punctuation, joiners.</summary>
    private static bool IsWordRune(Rune rune) =>
        rune.Value is 0x200C or 0x200D
        || Rune.GetUnicodeCategory(rune) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
            or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
            or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.ConnectorPunctuation;

    private sealed class Node
    {
        public Dictionary<char, Node>? Children { get; set; }

        public AddedToken? Token { get; set; }
    }
}
