using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// A .NET regular expression that behaves, for the patterns found in <c>tokenizer.json</c> files,
/// like the Oniguruma engine Hugging Face tokenizers uses: it matches on code points.
/// </summary>
/// <remarks>
/// .NET regexes work on UTF-16 code units, so a character outside the BMP (an emoji, 𝔘) is two
/// surrogates of category Cs: <c>\p{L}</c> would not match 𝔘, and <c>[^\r\n\p{L}\p{N}]?\p{L}+</c>
/// would take half of an emoji. Before matching, every supplementary code point is therefore folded
/// to one BMP stand-in character of the same Unicode general category (all that <c>\p{..}</c>,
/// <c>\s</c> and <c>\w</c> look at), and match positions are mapped back to the original text.
/// Microsoft.ML.Tokenizers' <c>RegexPreTokenizer</c> runs the regex on UTF-16 directly and reports
/// only the matches (not the gaps a HF <c>Split</c> keeps), so it is not used here.
/// </remarks>
internal sealed class CodePointRegex
{
    private static readonly char[] s_standIns = BuildStandIns();
    private readonly Regex _regex;

    public CodePointRegex(string pattern, bool isRegex)
    {
        Pattern = pattern;
        _regex = new Regex(
            isRegex ? pattern : Regex.Escape(pattern),
            RegexOptions.CultureInvariant | RegexOptions.Compiled);
    }

    public string Pattern { get; }

    /// <summary>Adds the (start, length) of every non-empty match in <paramref name="text"/>, left to right.</summary>
    public void FindMatches(string text, List<(int Start, int Length)> matches)
    {
        if (!HasSurrogates(text))
        {
            foreach (ValueMatch match in _regex.EnumerateMatches(text))
            {
                if (match.Length > 0)
                {
                    matches.Add((match.Index, match.Length));
                }
            }

            return;
        }

        // folded[i] stands for text[offsets[i]]; offsets has one extra entry for the end.
        var folded = new StringBuilder(text.Length);
        var offsets = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            offsets.Add(i);
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                int codePoint = char.ConvertToUtf32(c, text[i + 1]);
                folded.Append(s_standIns[(int)CharUnicodeInfo.GetUnicodeCategory(codePoint)]);
                i++;
            }
            else
            {
                folded.Append(c);
            }
        }

        offsets.Add(text.Length);
        foreach (ValueMatch match in _regex.EnumerateMatches(folded.ToString()))
        {
            if (match.Length > 0)
            {
                int start = offsets[match.Index];
                matches.Add((start, offsets[match.Index + match.Length] - start));
            }
        }
    }

    private static bool HasSurrogates(string text)
    {
        foreach (char c in text)
        {
            if (char.IsSurrogate(c))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// For each general category, a BMP character of that category that is not white space and has
    /// no ASCII case partner (so case-insensitive literals such as <c>(?i:'s)</c> cannot match it).
    /// </summary>
    private static char[] BuildStandIns()
    {
        var standIns = new char[Enum.GetValues<UnicodeCategory>().Length];
        Array.Fill(standIns, '\uFFFD');
        var found = new bool[standIns.Length];
        for (int c = 0x100; c <= 0xFFFF; c++)
        {
            if (c is >= 0xD800 and <= 0xDFFF)
            {
                continue;
            }

            char ch = (char)c;
            int category = (int)CharUnicodeInfo.GetUnicodeCategory(ch);
            if (!found[category] && !char.IsWhiteSpace(ch)
                && char.ToUpperInvariant(ch) >= 0x80 && char.ToLowerInvariant(ch) >= 0x80)
            {
                standIns[category] = ch;
                found[category] = true;
            }
        }

        return standIns;
    }
}
