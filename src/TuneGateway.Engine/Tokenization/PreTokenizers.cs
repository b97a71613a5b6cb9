using System.Globalization;
using System.Text.Json;

namespace TuneGateway.Engine.Tokenization;

/// <summary>One stretch of text on its way to the BPE model.</summary>
/// <param name="Text">The text (after normalization and earlier pre-tokenizers).</param>
/// <param name="AtStart">Whether the stretch begins at offset 0 of the original input
/// (HF's <c>Metaspace</c> with <c>prepend_scheme: first</c> looks at this).</param>
internal readonly record struct TextPiece(string Text, bool AtStart);

/// <summary>How a split keeps the delimiters it found (HF's <c>SplitDelimiterBehavior</c>).</summary>
internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

/// <summary>
/// A <c>tokenizer.json</c> pre-tokenizer: cuts each piece of text into the pre-tokens the model
/// encodes one by one.
/// </summary>
/// <remarks>
/// Hand-written: Microsoft.ML.Tokenizers' pre-tokenizers return only regex matches (HF's
/// <c>Split</c> keeps the gaps too and has five delimiter behaviours), have no byte-level or
/// Metaspace step, and match on UTF-16 units rather than code points (see <see cref="CodePointRegex"/>).
/// </remarks>
internal abstract class PreTokenizerStep
{
    /// <summary>The regex HF's <c>ByteLevel</c> pre-tokenizer uses when <c>use_regex</c> is true (GPT-2's).</summary>
    internal const string Gpt2Pattern =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Whether this step maps text to the byte-level alphabet.</summary>
    public virtual bool IsByteLevel => false;

    /// <summary>Whether no plain space survives this step (byte-level and Metaspace replace them).</summary>
    public virtual bool ReplacesSpaces => false;

    /// <summary>Appends the pieces <paramref name="piece"/> is cut into to <paramref name="output"/>.</summary>
    public abstract void Split(TextPiece piece, List<TextPiece> output);

    /// <summary>Builds the pre-tokenizer described at <paramref name="path"/> (null when absent).</summary>
    public static PreTokenizerStep? FromJson(JsonElement? element, string path, JsonFields json)
    {
        if (element is not { } config)
        {
            return null;
        }

        string type = json.RequireType(config, path);
        return type switch
        {
            "ByteLevel" => new ByteLevelStep(
                json.OptionalBool(config, "add_prefix_space", path, true),
                json.OptionalBool(config, "use_regex", path, true)),
            "Split" => RegexSplitStep.FromJson(config, path, json),
            "Metaspace" => MetaspaceStep.FromJson(config, path, json),
            "Digits" => new DigitsStep(json.OptionalBool(config, "individual_digits", path, false)),
            "Sequence" => SequenceStep.FromJson(config, path, json),
            _ => throw json.Error(JsonFields.Join(path, "type"),
                $"unsupported pre-tokenizer type '{type}' (supported: ByteLevel, Split, Metaspace, Digits, Sequence)"),
        };
    }

    internal static SplitBehavior ParseBehavior(string value, string field, JsonFields json) =>
        value switch
        {
            "Removed" => SplitBehavior.Removed,
            "Isolated" => SplitBehavior.Isolated,
            "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
            "MergedWithNext" => SplitBehavior.MergedWithNext,
            "Contiguous" => SplitBehavior.Contiguous,
            _ => throw json.Error(field, $"unknown split behavior '{value}'"),
        };

    /// <summary>
    /// Cuts <paramref name="piece"/> at the given delimiter matches the way HF's
    /// <c>NormalizedString::split</c> does, dropping empty pieces.
    /// </summary>
    protected static void SplitOnMatches(
        TextPiece piece, List<(int Start, int Length)> matches, SplitBehavior behavior, bool invert, List<TextPiece> output)
    {
        string text = piece.Text;

        // Cover the whole text with (start, end, isMatch) segments.
        var segments = new List<(int Start, int End, bool IsMatch)>(matches.Count * 2 + 1);
        int previous = 0;
        foreach ((int start, int length) in matches)
        {
            if (start > previous)
            {
                segments.Add((previous, start, invert));
            }

            segments.Add((start, start + length, !invert));
            previous = start + length;
        }

        if (previous < text.Length)
        {
            segments.Add((previous, text.Length, invert));
        }

        var spans = new List<(int Start, int End)>(segments.Count);
        switch (behavior)
        {
            case SplitBehavior.Removed:
                foreach (var s in segments)
                {
                    if (!s.IsMatch)
                    {
                        spans.Add((s.Start, s.End));
                    }
                }

                break;
            case SplitBehavior.Isolated:
                foreach (var s in segments)
                {
                    spans.Add((s.Start, s.End));
                }

                break;
            case SplitBehavior.MergedWithPrevious:
            {
                bool previousMatch = false;
                foreach (var s in segments)
                {
                    if (s.IsMatch && !previousMatch && spans.Count > 0)
                    {
                        spans[^1] = (spans[^1].Start, s.End);
                    }
                    else
                    {
                        spans.Add((s.Start, s.End));
                    }

                    previousMatch = s.IsMatch;
                }

                break;
            }

            case SplitBehavior.MergedWithNext:
            {
                bool previousMatch = false;
                for (int i = segments.Count - 1; i >= 0; i--)
                {
                    var s = segments[i];
                    if (s.IsMatch && !previousMatch && spans.Count > 0)
                    {
                        spans[^1] = (s.Start, spans[^1].End);
                    }
                    else
                    {
                        spans.Add((s.Start, s.End));
                    }

                    previousMatch = s.IsMatch;
                }

                spans.Reverse();
                break;
            }

            case SplitBehavior.Contiguous:
            {
                bool previousMatch = false;
                foreach (var s in segments)
                {
                    if (s.IsMatch == previousMatch && spans.Count > 0)
                    {
                        spans[^1] = (spans[^1].Start, s.End);
                    }
                    else
                    {
                        spans.Add((s.Start, s.End));
                    }

                    previousMatch = s.IsMatch;
                }

                break;
            }
        }

        foreach ((int start, int end) in spans)
        {
            if (end > start)
            {
                output.Add(new TextPiece(
                    start == 0 && end == text.Length ? text : text[start..end],
                    piece.AtStart && start == 0));
            }
        }
    }

    /// <summary>HF <c>ByteLevel</c>: optional prefix space, optional GPT-2 regex split, then bytes to alphabet.</summary>
    private sealed class ByteLevelStep(bool addPrefixSpace, bool useRegex) : PreTokenizerStep
    {
        private static readonly CodePointRegex s_gpt2 = new(Gpt2Pattern, isRegex: true);

        public override bool IsByteLevel => true;

        public override bool ReplacesSpaces => true;

        public override void Split(TextPiece piece, List<TextPiece> output)
        {
            if (addPrefixSpace && !piece.Text.StartsWith(' '))
            {
                piece = piece with { Text = " " + piece.Text };
            }

            int first = output.Count;
            if (useRegex)
            {
                var matches = new List<(int, int)>();
                s_gpt2.FindMatches(piece.Text, matches);
                SplitOnMatches(piece, matches, SplitBehavior.Isolated, invert: false, output);
            }
            else
            {
                output.Add(piece);
            }

            for (int i = first; i < output.Count; i++)
            {
                output[i] = output[i] with { Text = ByteLevelAlphabet.Encode(output[i].Text) };
            }
        }
    }

    /// <summary>HF <c>Split</c>: cut on a literal or regex with a delimiter behaviour.</summary>
    private sealed class RegexSplitStep(CodePointRegex pattern, SplitBehavior behavior, bool invert) : PreTokenizerStep
    {
        public static RegexSplitStep FromJson(JsonElement config, string path, JsonFields json)
        {
            (string value, bool isRegex) = json.RequirePattern(config, "pattern", path);
            CodePointRegex regex;
            try
            {
                regex = new CodePointRegex(value, isRegex);
            }
            catch (ArgumentException e)
            {
                throw json.Error(JsonFields.Join(path, "pattern"),
                    $"is not a regular expression .NET can run: {e.Message}", e);
            }

            SplitBehavior behavior = ParseBehavior(
                json.RequireString(config, "behavior", path), JsonFields.Join(path, "behavior"), json);
            return new RegexSplitStep(regex, behavior, json.OptionalBool(config, "invert", path, false));
        }

        public override void Split(TextPiece piece, List<TextPiece> output)
        {
            var matches = new List<(int, int)>();
            pattern.FindMatches(piece.Text, matches);
            SplitOnMatches(piece, matches, behavior, invert, output);
        }
    }

    /// <summary>HF <c>Metaspace</c>: spaces become the replacement character, with an optional prefix.</summary>
    private sealed class MetaspaceStep(char replacement, MetaspacePrepend prepend, bool split) : PreTokenizerStep
    {
        public override bool ReplacesSpaces => replacement != ' ';

        public static MetaspaceStep FromJson(JsonElement config, string path, JsonFields json)
        {
            (char replacement, MetaspacePrepend prepend, bool split) = ReadMetaspace(config, path, json);
            return new MetaspaceStep(replacement, prepend, split);
        }

        public override void Split(TextPiece piece, List<TextPiece> output)
        {
            string text = piece.Text.Replace(' ', replacement);
            bool addPrefix = prepend switch
            {
                MetaspacePrepend.Always => true,
                MetaspacePrepend.First => piece.AtStart,
                _ => false,
            };
            if (addPrefix && !text.StartsWith(replacement))
            {
                text = replacement + text;
            }

            piece = piece with { Text = text };
            if (!split)
            {
                output.Add(piece);
                return;
            }

            var matches = new List<(int, int)>();
            for (int i = 0; i < text.Length; i++)
            {
                if (text[i] == replacement)
                {
                    matches.Add((i, 1));
                }
            }

            SplitOnMatches(piece, matches, SplitBehavior.MergedWithNext, invert: false, output);
        }
    }

    /// <summary>HF <c>Digits</c>: numeric characters isolated one by one or as runs.</summary>
    private sealed class DigitsStep(bool individualDigits) : PreTokenizerStep
    {
        public override void Split(TextPiece piece, List<TextPiece> output)
        {
            var matches = new List<(int, int)>();
            string text = piece.Text;
            for (int i = 0; i < text.Length; i++)
            {
                int length = char.IsSurrogatePair(text, i) ? 2 : 1;
                UnicodeCategory category = CharUnicodeInfo.GetUnicodeCategory(text, i);
                if (category is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber)
                {
                    matches.Add((i, length));
                }

                i += length - 1;
            }

            SplitOnMatches(piece, matches, individualDigits ? SplitBehavior.Isolated : SplitBehavior.Contiguous, invert: false, output);
        }
    }

    private sealed class SequenceStep(IReadOnlyList<PreTokenizerStep> steps) : PreTokenizerStep
    {
        public override bool IsByteLevel => steps.Any(s => s.IsByteLevel);

        public override bool ReplacesSpaces => steps.Any(s => s.ReplacesSpaces);

        public static SequenceStep FromJson(JsonElement config, string path, JsonFields json)
        {
            JsonElement items = json.RequireArray(config, "pretokenizers", path);
            var steps = new List<PreTokenizerStep>();
            int index = 0;
            foreach (JsonElement item in items.EnumerateArray())
            {
                string itemPath = $"{JsonFields.Join(path, "pretokenizers")}[{index++}]";
                steps.Add(PreTokenizerStep.FromJson(item, itemPath, json) ?? throw json.Error(itemPath, "must not be null"));
            }

            return new SequenceStep(steps);
        }

        public override void Split(TextPiece piece, List<TextPiece> output)
        {
            var current = new List<TextPiece> { piece };
            var next = new List<TextPiece>();
            foreach (PreTokenizerStep step in steps)
            {
                next.Clear();
                foreach (TextPiece p in current)
                {
                    step.Split(p, next);
                }

                (current, next) = (next, current);
            }

            output.AddRange(current);
        }
    }

    /// <summary>Reads the fields shared by the Metaspace pre-tokenizer and decoder.</summary>
    internal static (char Replacement, MetaspacePrepend Prepend, bool Split) ReadMetaspace(
        JsonElement config, string path, JsonFields json)
    {
        string replacement = json.RequireString(config, "replacement", path);
        if (replacement.Length != 1)
        {
            throw json.Error(JsonFields.Join(path, "replacement"), "must be a single character");
        }

        MetaspacePrepend prepend;
        if (json.OptionalString(config, "prepend_scheme", path) is { } scheme)
        {
            prepend = scheme switch
            {
                "always" => MetaspacePrepend.Always,
                "first" => MetaspacePrepend.First,
                "never" => MetaspacePrepend.Never,
                _ => throw json.Error(JsonFields.Join(path, "prepend_scheme"), $"unknown prepend scheme '{scheme}'"),
            };
        }
        else
        {
            // Files written before prepend_scheme existed carry add_prefix_space instead.
            prepend = json.OptionalBool(config, "add_prefix_space", path, true) ? MetaspacePrepend.Always : MetaspacePrepend.Never;
        }

        return (replacement[0], prepend, json.OptionalBool(config, "split", path, true));
    }
}

/// <summary>When HF's <c>Metaspace</c> adds the replacement character in front of the text.</summary>
internal enum MetaspacePrepend
{
    Always,
    First,
    Never,
}
