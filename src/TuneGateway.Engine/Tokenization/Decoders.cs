using System.Text;
using System.Text.Json;

namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// A <c>tokenizer.json</c> decoder step. As in HF, each step maps the list of token strings to a
/// new list, and the final list is concatenated.
/// </summary>
/// <remarks>
/// Hand-written: Microsoft.ML.Tokenizers' <c>BpeTokenizer.Decode</c> knows only byte-level BPE and
/// plain concatenation; HF's chain (Replace, ByteFallback with one U+FFFD per invalid byte, Fuse,
/// Strip, Metaspace's first-token rule) has no counterpart there.
/// </remarks>
internal abstract class DecoderStep
{
    /// <summary>Whether this step turns <c>&lt;0xNN&gt;</c> tokens into bytes.</summary>
    public virtual bool HandlesByteFallback => false;

    /// <summary>Whether token strings are in the byte-level alphabet (each character stands for one byte).</summary>
    public virtual bool IsByteLevel => false;

    public abstract List<string> Decode(List<string> tokens);

    /// <summary>Whether <paramref name="token"/> is a <c>&lt;0xNN&gt;</c> byte token; gives the byte.</summary>
    public static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    /// <summary>Builds the decoder described at <paramref name="path"/> (null when absent).</summary>
    public static DecoderStep? FromJson(JsonElement? element, string path, JsonFields json)
    {
        if (element is not { } config)
        {
            return null;
        }

        string type = json.RequireType(config, path);
        return type switch
        {
            "ByteLevel" => new ByteLevelDecoder(),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Replace" => ReplaceDecoder.FromJson(config, path, json),
            "Strip" => StripDecoder.FromJson(config, path, json),
            "Metaspace" => MetaspaceDecoder.FromJson(config, path, json),
            "Sequence" => SequenceDecoder.FromJson(config, path, json),
            _ => throw json.Error(JsonFields.Join(path, "type"),
                $"unsupported decoder type '{type}' (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, Sequence)"),
        };
    }

    /// <summary>
    /// Byte-level alphabet back to bytes (a token with a character outside the alphabet, such as an
    /// added token with a space, contributes its own UTF-8), then lossy UTF-8 decoding of the whole.
    /// </summary>
    private sealed class ByteLevelDecoder : DecoderStep
    {
        public override bool IsByteLevel => true;

        public override List<string> Decode(List<string> tokens)
        {
            var bytes = new List<byte>();
            foreach (string token in tokens)
            {
                int mark = bytes.Count;
                bool inAlphabet = true;
                foreach (char c in token)
                {
                    int b = ByteLevelAlphabet.ToByte(c);
                    if (b < 0)
                    {
                        inAlphabet = false;
                        break;
                    }

                    bytes.Add((byte)b);
                }

                if (!inAlphabet)
                {
                    bytes.RemoveRange(mark, bytes.Count - mark);
                    bytes.AddRange(Encoding.UTF8.GetBytes(token));
                }
            }

            // .NET replaces each maximal invalid subsequence with one U+FFFD, as Rust's from_utf8_lossy does.
            return [Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes))];
        }
    }

    /// <summary>
    /// Consecutive <c>&lt;0xNN&gt;</c> tokens become their UTF-8 text; if the group is not valid
    /// UTF-8, each of its bytes becomes one U+FFFD.
    /// </summary>
    private sealed class ByteFallbackDecoder : DecoderStep
    {
        private static readonly UTF8Encoding s_strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

        public override bool HandlesByteFallback => true;

        public override List<string> Decode(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            var pending = new List<byte>();
            foreach (string token in tokens)
            {
                if (TryParseByteToken(token, out byte value))
                {
                    pending.Add(value);
                    continue;
                }

                Flush(pending, result);
                result.Add(token);
            }

            Flush(pending, result);
            return result;
        }

        private static void Flush(List<byte> pending, List<string> result)
        {
            if (pending.Count == 0)
            {
                return;
            }

            ReadOnlySpan<byte> bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(pending);
            if (System.Text.Unicode.Utf8.IsValid(bytes))
            {
                result.Add(s_strict.GetString(bytes));
            }
            else
            {
                for (int i = 0; i < pending.Count; i++)
                {
                    result.Add("\uFFFD");
                }
            }

            pending.Clear();
        }
    }

    private sealed class FuseDecoder : DecoderStep
    {
        public override List<string> Decode(List<string> tokens) => [string.Concat(tokens)];
    }

    /// <summary>Replaces a literal or regex in every token.</summary>
    private sealed class ReplaceDecoder(TextNormalizer.ReplaceNormalizer replace) : DecoderStep
    {
        public static ReplaceDecoder FromJson(JsonElement config, string path, JsonFields json) =>
            new(TextNormalizer.ReplaceNormalizer.FromJson(config, path, json));

        public override List<string> Decode(List<string> tokens) => tokens.ConvertAll(replace.Normalize);
    }

    /// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing copies of a character from every token.</summary>
    private sealed class StripDecoder(char content, int start, int stop) : DecoderStep
    {
        public static StripDecoder FromJson(JsonElement config, string path, JsonFields json)
        {
            string content = json.RequireString(config, "content", path);
            if (content.Length != 1)
            {
                throw json.Error(JsonFields.Join(path, "content"), "must be a single character");
            }

            return new StripDecoder(content[0], json.OptionalInt(config, "start", path, 0), json.OptionalInt(config, "stop", path, 0));
        }

        public override List<string> Decode(List<string> tokens) => tokens.ConvertAll(Strip);

        private string Strip(string token)
        {
            int begin = 0;
            while (begin < start && begin < token.Length && token[begin] == content)
            {
                begin++;
            }

            int end = token.Length;
            for (int i = 0; i < stop && end > begin && token[end - 1] == content; i++)
            {
                end--;
            }

            return token[begin..end];
        }
    }

    /// <summary>
    /// The replacement character becomes a space, except in the first token, where (unless the
    /// prepend scheme is <c>never</c>) every replacement character is dropped.
    /// </summary>
    private sealed class MetaspaceDecoder(char replacement, bool dropInFirstToken) : DecoderStep
    {
        public static MetaspaceDecoder FromJson(JsonElement config, string path, JsonFields json)
        {
            (char replacement, MetaspacePrepend prepend, _) = PreTokenizerStep.ReadMetaspace(config, path, json);
            return new MetaspaceDecoder(replacement, prepend != MetaspacePrepend.Never);
        }

        public override List<string> Decode(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            for (int i = 0; i < tokens.Count; i++)
            {
                result.Add(i == 0 && dropInFirstToken
                    ? tokens[i].Replace(replacement.ToString(), string.Empty, StringComparison.Ordinal)
                    : tokens[i].Replace(replacement, ' '));
            }

            return result;
        }
    }

    private sealed class SequenceDecoder(IReadOnlyList<DecoderStep> steps) : DecoderStep
    {
        public override bool HandlesByteFallback => steps.Any(s => s.HandlesByteFallback);

        public override bool IsByteLevel => steps.Any(s => s.IsByteLevel);

        public static SequenceDecoder FromJson(JsonElement config, string path, JsonFields json)
        {
            JsonElement items = json.RequireArray(config, "decoders", path);
            var steps = new List<DecoderStep>();
            int index = 0;
            foreach (JsonElement item in items.EnumerateArray())
            {
                string itemPath = $"{JsonFields.Join(path, "decoders")}[{index++}]";
                steps.Add(DecoderStep.FromJson(item, itemPath, json) ?? throw json.Error(itemPath, "must not be null"));
            }

            return new SequenceDecoder(steps);
        }

        public override List<string> Decode(List<string> tokens)
        {
            foreach (DecoderStep step in steps)
            {
                tokens = step.Decode(tokens);
            }

            return tokens;
        }
    }
}
