using System.Text;
using System.Text.Json;

namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// A Hugging Face fast tokenizer read from <c>tokenizer.json</c>, producing the same ids as the
/// HF <c>tokenizers</c> library for the BPE families LLMs use: byte-level BPE (GPT-2, Llama-3,
/// Qwen2) and SentencePiece-style BPE with byte fallback (Llama-2, Mistral).
/// </summary>
/// <remarks>
/// Encoding follows HF's pipeline: added tokens that match raw text are cut out first; each stretch
/// in between is normalized, searched for added tokens that match normalized text, pre-tokenized,
/// and each pre-token is encoded by the BPE model; with <c>addSpecialTokens</c> the post-processor
/// template (e.g. BOS) is applied. Decoding maps ids to token strings (skipping special tokens on
/// request) and runs the decoder chain.
/// <para>From <c>tokenizer_config.json</c> come the BOS/EOS/UNK/PAD token names and, when present,
/// <c>add_bos_token</c>/<c>add_eos_token</c>, which decide (as in transformers' Llama-style fast
/// tokenizers) whether <c>addSpecialTokens</c> puts BOS first and EOS last. <c>truncation</c> and
/// <c>padding</c> in <c>tokenizer.json</c> are ignored: the engine enforces context lengths.</para>
/// <para>Instances are immutable once loaded and thread-safe.</para>
/// </remarks>
public sealed class HfTokenizer
{
    private readonly BpeModel _model;
    private readonly TextNormalizer? _normalizer;
    private readonly PreTokenizerStep? _preTokenizer;
    private readonly DecoderStep? _decoder;
    private PostProcessor _postProcessor; // final once FromFiles returns
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly HashSet<string> _specialContents;
    private readonly Lazy<int?> _anchorId;

    private HfTokenizer(
        BpeModel model,
        TextNormalizer? normalizer,
        PreTokenizerStep? preTokenizer,
        DecoderStep? decoder,
        PostProcessor postProcessor,
        IReadOnlyList<AddedToken> addedTokens)
    {
        _model = model;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _decoder = decoder;
        _postProcessor = postProcessor;
        _addedById = [];
        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        foreach (AddedToken token in addedTokens)
        {
            _addedById[token.Id] = token;
            _addedByContent[token.Content] = token;
        }

        _specialContents = new HashSet<string>(addedTokens.Where(t => t.Special).Select(t => t.Content), StringComparer.Ordinal);
        _rawMatcher = new AddedTokenMatcher(addedTokens.Where(t => !t.Normalized).Select(t => (t.Content, t)));
        _normalizedMatcher = new AddedTokenMatcher(addedTokens.Where(t => t.Normalized)
            .Select(t => (normalizer?.Normalize(t.Content) ?? t.Content, t)));
        VocabSize = Math.Max(model.MaxId, addedTokens.Count == 0 ? -1 : addedTokens.Max(t => t.Id)) + 1;
        DecoderHandlesByteFallback = decoder?.HandlesByteFallback == true;
        _anchorId = new Lazy<int?>(FindAnchor);
    }

    /// <summary>Number of ids: the largest id over the vocabulary and added tokens, plus one.</summary>
    public int VocabSize { get; }

    /// <summary>The id of tokenizer_config's <c>bos_token</c>, if set and known.</summary>
    public int? BosTokenId { get; private set; }

    /// <summary>The id of tokenizer_config's <c>eos_token</c>, if set and known.</summary>
    public int? EosTokenId { get; private set; }

    /// <summary>The id of tokenizer_config's <c>unk_token</c> (else the model's), if set and known.</summary>
    public int? UnkTokenId { get; private set; }

    /// <summary>The id of tokenizer_config's <c>pad_token</c>, if set and known.</summary>
    public int? PadTokenId { get; private set; }

    /// <summary>Whether the decoder turns <c>&lt;0xNN&gt;</c> tokens into bytes (SentencePiece byte fallback).</summary>
    internal bool DecoderHandlesByteFallback { get; }

    /// <summary>Loads <c>tokenizer.json</c> and, when present, <c>tokenizer_config.json</c> from a model directory.</summary>
    /// <exception cref="TokenizerLoadException">A file is missing, malformed or unsupported.</exception>
    public static HfTokenizer FromDirectory(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        if (!Directory.Exists(modelDirectory))
        {
            throw new TokenizerLoadException(modelDirectory, null, "the model directory does not exist");
        }

        string config = Path.Combine(modelDirectory, "tokenizer_config.json");
        return FromFiles(Path.Combine(modelDirectory, "tokenizer.json"), File.Exists(config) ? config : null);
    }

    /// <summary>Loads a tokenizer from <c>tokenizer.json</c> and an optional <c>tokenizer_config.json</c>.</summary>
    /// <exception cref="TokenizerLoadException">A file is missing, malformed or unsupported.</exception>
    public static HfTokenizer FromFiles(string tokenizerJsonPath, string? tokenizerConfigPath)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJsonPath);
        HfTokenizer tokenizer;
        using (JsonDocument document = ReadJson(tokenizerJsonPath))
        {
            tokenizer = Build(document.RootElement, new JsonFields(tokenizerJsonPath));
        }

        if (tokenizerConfigPath is not null)
        {
            using JsonDocument config = ReadJson(tokenizerConfigPath);
            tokenizer.ApplyConfig(config.RootElement, new JsonFields(tokenizerConfigPath));
        }
        else
        {
            tokenizer.UnkTokenId = tokenizer._model.UnkId;
        }

        return tokenizer;
    }

    /// <summary>Whether <paramref name="id"/> is a special added token (skipped by <c>skipSpecialTokens</c>).</summary>
    public bool IsSpecial(int id) => IdToToken(id) is { } token && _specialContents.Contains(token);

    /// <summary>The id of a token string (added tokens first, then the vocabulary), or null.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out AddedToken? added))
        {
            return added.Id;
        }

        return _model.TryGetId(token, out int id) ? id : null;
    }

    /// <summary>The token string of an id (added tokens first, then the vocabulary), or null.</summary>
    public string? IdToToken(int id) =>
        _addedById.TryGetValue(id, out AddedToken? added) ? added.Content : _model.IdToToken(id);

    /// <summary>Encodes text to ids, as HF's <c>encode(text, add_special_tokens=...)</c>.</summary>
    /// <remarks>Lone UTF-16 surrogates (which no UTF-8 text can hold) are read as U+FFFD.</remarks>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 4);
        var segments = new List<TextSegment>();
        if (_rawMatcher.IsEmpty)
        {
            segments.Add(new TextSegment(0, text.Length, null));
        }
        else
        {
            _rawMatcher.Split(text, segments);
        }

        var normalizedSegments = new List<TextSegment>();
        var pieces = new List<TextPiece>();
        foreach (TextSegment segment in segments)
        {
            if (segment.Token is { } token)
            {
                ids.Add(token.Id);
                continue;
            }

            string stretch = text[segment.Start..segment.End];
            string normalized = _normalizer?.Normalize(stretch) ?? stretch;
            bool atStart = segment.Start == 0;
            if (_normalizedMatcher.IsEmpty)
            {
                EncodeStretch(normalized, atStart, ids, pieces);
                continue;
            }

            normalizedSegments.Clear();
            _normalizedMatcher.Split(normalized, normalizedSegments);
            foreach (TextSegment inner in normalizedSegments)
            {
                if (inner.Token is { } innerToken)
                {
                    ids.Add(innerToken.Id);
                }
                else
                {
                    EncodeStretch(normalized[inner.Start..inner.End], atStart && inner.Start == 0, ids, pieces);
                }
            }
        }

        return addSpecialTokens ? _postProcessor.Apply(ids) : ids;
    }

    /// <summary>Decodes ids to text, as HF's <c>decode(ids, skip_special_tokens=...)</c>; unknown ids are skipped.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            if (IdToToken(id) is { } token && !(skipSpecialTokens && _specialContents.Contains(token)))
            {
                tokens.Add(token);
            }
        }

        return _decoder is null ? string.Join(' ', tokens) : string.Concat(_decoder.Decode(tokens));
    }

    /// <summary>Creates a streaming decoder for generated ids.</summary>
    /// <param name="skipSpecialTokens">Leave special tokens out of the text.</param>
    /// <param name="promptIds">The prompt, whose last tokens give the first generated token its context
    /// (e.g. the space a SentencePiece <c>▁word</c> stands for); they are not emitted.</param>
    public IncrementalDecoder CreateIncrementalDecoder(bool skipSpecialTokens = false, IReadOnlyList<int>? promptIds = null) =>
        new(this, skipSpecialTokens, promptIds);

    /// <summary>
    /// The bytes a token adds to decoded text wherever it stands (not at the very start, where
    /// SentencePiece decoders drop a leading space), for constrained decoding: byte-level pieces
    /// through the byte alphabet, <c>&lt;0xNN&gt;</c> byte-fallback tokens as their byte, other pieces
    /// as the UTF-8 of their text after a neighbouring token. Null for special tokens (skipped in
    /// output text) and unknown ids.
    /// </summary>
    public byte[]? TokenBytes(int id)
    {
        if (IdToToken(id) is not { } token || _specialContents.Contains(token))
        {
            return null;
        }

        if (DecoderHandlesByteFallback && DecoderStep.TryParseByteToken(token, out byte value))
        {
            return [value];
        }

        if (_decoder?.IsByteLevel == true)
        {
            var bytes = new byte[token.Length];
            for (int i = 0; i < token.Length; i++)
            {
                int b = ByteLevelAlphabet.ToByte(token[i]);
                if (b < 0)
                {
                    // An added token outside the alphabet decodes as its own text.
                    return System.Text.Encoding.UTF8.GetBytes(token);
                }

                bytes[i] = (byte)b;
            }

            return bytes;
        }

        // Decoded after an anchor token, so start-of-text rules (a stripped leading space) do not apply.
        string text = Decode([id]);
        if (_anchorId.Value is int anchor)
        {
            string alone = Decode([anchor]);
            string both = Decode([anchor, id]);
            if (both.StartsWith(alone, StringComparison.Ordinal))
            {
                text = both[alone.Length..];
            }
        }

        return System.Text.Encoding.UTF8.GetBytes(text);
    }

    /// <summary>A plain letter token: decoding another token after it shows that token's bytes in context.</summary>
    private int? FindAnchor() =>
        new[] { "a", "x", "e", "t" }.Select(TokenToId).FirstOrDefault(id => id is not null && !IsSpecial(id.Value));

    /// <summary>Whether decoding holds <paramref name="id"/> back as part of a byte-fallback group.</summary>
    internal bool IsByteFallbackToken(int id) =>
        DecoderHandlesByteFallback && IdToToken(id) is { } token && DecoderStep.TryParseByteToken(token, out _);

    private void EncodeStretch(string text, bool atStart, List<int> ids, List<TextPiece> pieces)
    {
        if (text.Length == 0)
        {
            return;
        }

        if (_preTokenizer is null)
        {
            _model.Encode(text, ids);
            return;
        }

        pieces.Clear();
        _preTokenizer.Split(new TextPiece(text, atStart), pieces);
        foreach (TextPiece piece in pieces)
        {
            _model.Encode(piece.Text, ids);
        }
    }

    private static string ReplaceLoneSurrogates(string text)
    {
        StringBuilder? builder = null;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c))
            {
                continue;
            }

            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }

            builder ??= new StringBuilder(text);
            builder[i] = '\uFFFD';
        }

        return builder?.ToString() ?? text;
    }

    private static JsonDocument ReadJson(string path)
    {
        if (!File.Exists(path))
        {
            throw new TokenizerLoadException(path, null, "the file does not exist");
        }

        try
        {
            using FileStream stream = File.OpenRead(path);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { AllowTrailingCommas = true, MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException(path, null, $"malformed JSON: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new TokenizerLoadException(path, null, $"cannot be read: {e.Message}", e);
        }
    }

    private static HfTokenizer Build(JsonElement root, JsonFields json)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw json.Error(null, "the top level must be a JSON object");
        }

        JsonElement model = json.RequireObject(root, "model", "");
        TextNormalizer? normalizer = TextNormalizer.FromJson(JsonFields.Get(root, "normalizer"), "normalizer", json);
        PreTokenizerStep? preTokenizer = PreTokenizerStep.FromJson(JsonFields.Get(root, "pre_tokenizer"), "pre_tokenizer", json);
        DecoderStep? decoder = DecoderStep.FromJson(JsonFields.Get(root, "decoder"), "decoder", json);
        PostProcessor postProcessor = PostProcessor.FromJson(JsonFields.Get(root, "post_processor"), "post_processor", json);
        bool modelNeverSeesSpaces = preTokenizer?.ReplacesSpaces == true || normalizer?.ReplacesSpaces == true;
        BpeModel bpe = BpeModel.FromJson(model, json, modelNeverSeesSpaces);
        List<AddedToken> addedTokens = ReadAddedTokens(root, json);
        return new HfTokenizer(bpe, normalizer, preTokenizer, decoder, postProcessor, addedTokens);
    }

    private static List<AddedToken> ReadAddedTokens(JsonElement root, JsonFields json)
    {
        var tokens = new List<AddedToken>();
        if (JsonFields.Get(root, "added_tokens") is not { } array)
        {
            return tokens;
        }

        if (array.ValueKind != JsonValueKind.Array)
        {
            throw json.Error("added_tokens", "must be a JSON array");
        }

        int index = 0;
        foreach (JsonElement entry in array.EnumerateArray())
        {
            string path = $"added_tokens[{index++}]";
            int id = json.RequireInt(entry, "id", path);
            if (id < 0)
            {
                throw json.Error(JsonFields.Join(path, "id"), "must not be negative");
            }

            tokens.Add(new AddedToken(
                id,
                json.RequireString(entry, "content", path),
                json.OptionalBool(entry, "special", path, false),
                json.OptionalBool(entry, "single_word", path, false),
                json.OptionalBool(entry, "lstrip", path, false),
                json.OptionalBool(entry, "rstrip", path, false),
                json.OptionalBool(entry, "normalized", path, true)));
        }

        return tokens;
    }

    /// <summary>Reads the special-token names and add_bos/add_eos flags of <c>tokenizer_config.json</c>.</summary>
    private void ApplyConfig(JsonElement config, JsonFields json)
    {
        if (config.ValueKind != JsonValueKind.Object)
        {
            throw json.Error(null, "the top level must be a JSON object");
        }

        BosTokenId = SpecialTokenId(config, "bos_token", json);
        EosTokenId = SpecialTokenId(config, "eos_token", json);
        UnkTokenId = SpecialTokenId(config, "unk_token", json) ?? _model.UnkId;
        PadTokenId = SpecialTokenId(config, "pad_token", json);

        bool? addBos = JsonFields.Get(config, "add_bos_token") is null ? null : json.OptionalBool(config, "add_bos_token", "", false);
        bool? addEos = JsonFields.Get(config, "add_eos_token") is null ? null : json.OptionalBool(config, "add_eos_token", "", false);
        _postProcessor = _postProcessor.WithBosEos(addBos, BosTokenId, addEos, EosTokenId);
    }

    /// <summary>A token named in tokenizer_config: a string or an AddedToken object with <c>content</c>.</summary>
    private int? SpecialTokenId(JsonElement config, string name, JsonFields json)
    {
        string? content = JsonFields.Get(config, name) switch
        {
            null => null,
            { ValueKind: JsonValueKind.String } value => value.GetString(),
            { ValueKind: JsonValueKind.Object } value => json.RequireString(value, "content", name),
            _ => throw json.Error(name, "must be a string or an object with 'content'"),
        };
        return content is null ? null : TokenToId(content);
    }
}
