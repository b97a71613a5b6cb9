using System.Text.Json;
using System.Text.RegularExpressions;
using TuneGateway.Engine.Tokenization.Unicode;

namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// A <c>tokenizer.json</c> normalizer. HF applies it to each stretch of text between added tokens
/// (not to the whole input), which is what <see cref="HfTokenizer"/> does too.
/// </summary>
/// <remarks>
/// Hand-written: Microsoft.ML.Tokenizers' normalizers (lower/upper case, SentencePiece's) do not
/// map onto HF's <c>Prepend</c>/<c>Replace</c>/<c>NFC</c> steps, and HF's per-stretch semantics
/// (e.g. <c>Prepend</c> leaves an empty stretch empty) are simple to state exactly in code.
/// </remarks>
internal abstract class TextNormalizer
{
    public abstract string Normalize(string text);

    /// <summary>Whether no plain space survives this normalizer (e.g. <c>Replace(" ", "▁")</c>).</summary>
    public virtual bool ReplacesSpaces => false;

    /// <summary>Builds the normalizer described at <paramref name="path"/> (null when absent).</summary>
    public static TextNormalizer? FromJson(JsonElement? element, string path, JsonFields json)
    {
        if (element is not { } config)
        {
            return null;
        }

        string type = json.RequireType(config, path);
        return type switch
        {
            "NFC" => new DelegateNormalizer(UnicodeNormalizer.ToNfc),
            "NFD" => new DelegateNormalizer(UnicodeNormalizer.ToNfd),
            "Prepend" => new PrependNormalizer(json.RequireString(config, "prepend", path)),
            "Replace" => ReplaceNormalizer.FromJson(config, path, json),
            "Strip" => new StripNormalizer(
                json.OptionalBool(config, "strip_left", path, false),
                json.OptionalBool(config, "strip_right", path, false)),
            "Sequence" => SequenceNormalizer.FromJson(config, path, json),
            _ => throw json.Error(JsonFields.Join(path, "type"),
                $"unsupported normalizer type '{type}' (supported: NFC, NFD, Prepend, Replace, Strip, Sequence)"),
        };
    }

    private sealed class DelegateNormalizer(Func<string, string> normalize) : TextNormalizer
    {
        public override string Normalize(string text) => normalize(text);
    }

    /// <summary>Prepends a string to non-empty text.</summary>
    private sealed class PrependNormalizer(string prefix) : TextNormalizer
    {
        public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
    }

    /// <summary>Strips white space on the left and/or right.</summary>
    private sealed class StripNormalizer(bool left, bool right) : TextNormalizer
    {
        public override string Normalize(string text) =>
            (left, right) switch
            {
                (true, true) => text.Trim(),
                (true, false) => text.TrimStart(),
                (false, true) => text.TrimEnd(),
                _ => text,
            };
    }

    private sealed class SequenceNormalizer(IReadOnlyList<TextNormalizer> normalizers) : TextNormalizer
    {
        public override bool ReplacesSpaces => normalizers.Any(n => n.ReplacesSpaces);

        public static SequenceNormalizer FromJson(JsonElement config, string path, JsonFields json)
        {
            JsonElement items = json.RequireArray(config, "normalizers", path);
            var normalizers = new List<TextNormalizer>();
            int index = 0;
            foreach (JsonElement item in items.EnumerateArray())
            {
                string itemPath = $"{JsonFields.Join(path, "normalizers")}[{index++}]";
                normalizers.Add(TextNormalizer.FromJson(item, itemPath, json)
                    ?? throw json.Error(itemPath, "must not be null"));
            }

            return new SequenceNormalizer(normalizers);
        }

        public override string Normalize(string text)
        {
            foreach (TextNormalizer normalizer in normalizers)
            {
                text = normalizer.Normalize(text);
            }

            return text;
        }
    }

    /// <summary>Replaces every occurrence of a literal or a regex with a fixed string.</summary>
    internal sealed class ReplaceNormalizer : TextNormalizer
    {
        private readonly string _literal;
        private readonly Regex? _regex;
        private readonly string _content;

        private ReplaceNormalizer(string pattern, bool isRegex, string content)
        {
            _literal = pattern;
            _regex = isRegex ? new Regex(pattern, RegexOptions.CultureInvariant) : null;
            _content = content;
        }

        public static ReplaceNormalizer FromJson(JsonElement config, string path, JsonFields json)
        {
            (string pattern, bool isRegex) = json.RequirePattern(config, "pattern", path);
            string content = json.RequireString(config, "content", path);
            if (!isRegex && pattern.Length == 0)
            {
                throw json.Error(JsonFields.Join(path, "pattern"), "must not be empty");
            }

            try
            {
                return new ReplaceNormalizer(pattern, isRegex, content);
            }
            catch (ArgumentException e)
            {
                throw json.Error(JsonFields.Join(path, "pattern"), $"is not a valid regular expression: {e.Message}", e);
            }
        }

        public override bool ReplacesSpaces => _regex is null && _literal == " " && !_content.Contains(' ');

        public override string Normalize(string text) =>
            _regex is null
                ? text.Replace(_literal, _content, StringComparison.Ordinal)
                : _regex.Replace(text, _content.Replace("$", "$$", StringComparison.Ordinal));
    }
}
