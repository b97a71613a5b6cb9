using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace TuneGateway.Engine.Tokenization;

/// <summary>
/// The <c>model</c> section of <c>tokenizer.json</c> when its type is <c>BPE</c>: turns one
/// pre-token into ids.
/// </summary>
/// <remarks>
/// The merge loop itself is Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> (built with
/// <see cref="BpeTokenizer.Create(BpeOptions)"/> and called with pre-tokenization and normalization
/// turned off): it ranks merges by id pair with a priority queue exactly as HF's BPE does, and it
/// handles <c>unk_token</c>/<c>fuse_unk</c>. Written here by hand, because the library has no
/// equivalent:
/// <list type="bullet">
/// <item><c>byte_fallback</c>: a character missing from the vocabulary becomes its UTF-8 bytes as
/// <c>&lt;0xNN&gt;</c> tokens. Such a character can never take part in a merge, so the word is cut
/// around it and the library merges each in-vocabulary run on its own (checked at load: no merge
/// may involve a byte or unknown token, or the cut would not be exact).</item>
/// <item><c>ignore_merges</c>: a pre-token that is itself in the vocabulary is emitted whole.</item>
/// <item>merges given as <c>["a", "b"]</c> pairs: the library only parses <c>"a b"</c> strings, so
/// a pair whose halves contain a space cannot be handed over; such merges can never fire when the
/// pipeline turns every space into another character first (byte-level, Metaspace, or a
/// <c>Replace</c> of spaces), and are only dropped then.</item>
/// <item>a result cache per pre-token of any length (the library caches words of up to 15 chars).</item>
/// </list>
/// </remarks>
internal sealed class BpeModel
{
    private const int CacheCapacity = 20_000;
    private const int MaxCachedWordLength = 256;

    private readonly BpeTokenizer _engine;
    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _idToToken;
    private readonly int[]? _byteTokenIds;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private int _cacheCount;

    private BpeModel(
        BpeTokenizer engine, Dictionary<string, int> vocab, int[]? byteTokenIds, int? unkId, bool fuseUnk, bool ignoreMerges)
    {
        _engine = engine;
        _vocab = vocab;
        _byteTokenIds = byteTokenIds;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _ignoreMerges = ignoreMerges;
        MaxId = vocab.Count == 0 ? -1 : vocab.Values.Max();
        _idToToken = new string?[MaxId + 1];
        foreach ((string token, int id) in vocab)
        {
            _idToToken[id] = token;
        }
    }

    /// <summary>The largest id in the vocabulary.</summary>
    public int MaxId { get; }

    /// <summary>The id of <c>unk_token</c>, when it is set and in the vocabulary.</summary>
    public int? UnkId => _unkId;

    /// <summary>The <c>unk_token</c> text, when set.</summary>
    public string? UnkToken { get; private init; }

    public bool TryGetId(string token, out int id) => _vocab.TryGetValue(token, out id);

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <summary>Reads the model section and builds the merge engine.</summary>
    /// <param name="model">The <c>model</c> object.</param>
    /// <param name="json">Field access for error messages.</param>
    /// <param name="modelNeverSeesSpaces">True when earlier steps replace every space.</param>
    public static BpeModel FromJson(JsonElement model, JsonFields json, bool modelNeverSeesSpaces)
    {
        const string path = "model";
        string type = json.OptionalString(model, "type", path) ?? "BPE";
        if (type != "BPE")
        {
            throw json.Error("model.type", $"unsupported model type '{type}' (only BPE is supported)");
        }

        if (JsonFields.Get(model, "dropout") is { ValueKind: JsonValueKind.Number } dropout && dropout.GetDouble() > 0)
        {
            throw json.Error("model.dropout", "BPE dropout is not supported");
        }

        if (json.OptionalString(model, "continuing_subword_prefix", path) is { Length: > 0 })
        {
            throw json.Error("model.continuing_subword_prefix", "is not supported");
        }

        if (json.OptionalString(model, "end_of_word_suffix", path) is { Length: > 0 })
        {
            throw json.Error("model.end_of_word_suffix", "is not supported");
        }

        Dictionary<string, int> vocab = ReadVocab(model, json);
        List<string> merges = ReadMerges(model, json, vocab, modelNeverSeesSpaces);

        string? unkToken = json.OptionalString(model, "unk_token", path);
        int? unkId = unkToken is not null && vocab.TryGetValue(unkToken, out int unk) ? unk : null;
        bool fuseUnk = json.OptionalBool(model, "fuse_unk", path, false);
        bool byteFallback = json.OptionalBool(model, "byte_fallback", path, false);
        bool ignoreMerges = json.OptionalBool(model, "ignore_merges", path, false);

        int[]? byteTokenIds = null;
        if (byteFallback)
        {
            byteTokenIds = new int[256];
            for (int b = 0; b < 256; b++)
            {
                byteTokenIds[b] = vocab.TryGetValue(ByteToken((byte)b), out int id) ? id : -1;
            }

            CheckNoMergeTouches(merges, byteTokenIds, vocab, unkToken, json);
        }

        BpeTokenizer engine;
        try
        {
            engine = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                // With byte fallback, unknown characters never reach the engine (see remarks).
                UnknownToken = byteFallback || unkId is null ? null : unkToken,
                FuseUnknownTokens = fuseUnk,
            });
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw json.Error("model.merges", $"the BPE model cannot be built: {e.Message}", e);
        }

        return new BpeModel(engine, vocab, byteTokenIds, unkId, fuseUnk, ignoreMerges) { UnkToken = unkToken };
    }

    /// <summary>The vocabulary spelling of a byte-fallback token, e.g. <c>&lt;0x0A&gt;</c>.</summary>
    public static string ByteToken(byte value) => $"<0x{value:X2}>";

    /// <summary>Appends the ids of one pre-token to <paramref name="ids"/>.</summary>
    public void Encode(string word, List<int> ids)
    {
        if (word.Length == 0)
        {
            return;
        }

        if (_cache.TryGetValue(word, out int[]? cached))
        {
            ids.AddRange(cached);
            return;
        }

        int first = ids.Count;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
        }
        else if (_byteTokenIds is null)
        {
            ids.AddRange(_engine.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
        }
        else
        {
            EncodeWithByteFallback(word, ids);
        }

        if (word.Length <= MaxCachedWordLength && Volatile.Read(ref _cacheCount) < CacheCapacity
            && _cache.TryAdd(word, ids.GetRange(first, ids.Count - first).ToArray()))
        {
            Interlocked.Increment(ref _cacheCount);
        }
    }

    /// <summary>
    /// HF's character loop for <c>byte_fallback</c> models: runs of known characters go to the merge
    /// engine; an unknown character becomes byte tokens, or (when a byte token is missing)
    /// <c>unk_token</c>, fused with a preceding unknown when <c>fuse_unk</c> is set.
    /// </summary>
    private void EncodeWithByteFallback(string word, List<int> ids)
    {
        int runStart = -1;
        bool unkPending = false;
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            int length = char.IsSurrogatePair(word, i) ? 2 : 1;
            if (_vocab.ContainsKey(word.Substring(i, length)))
            {
                if (runStart < 0)
                {
                    // Like HF, a pending unknown token is written when the next known character comes.
                    if (unkPending)
                    {
                        ids.Add(_unkId!.Value);
                        unkPending = false;
                    }

                    runStart = i;
                }
            }
            else
            {
                if (runStart >= 0)
                {
                    ids.AddRange(_engine.EncodeToIds(word[runStart..i], considerPreTokenization: false, considerNormalization: false));
                    runStart = -1;
                }

                int byteCount = Encoding.UTF8.GetBytes(word.AsSpan(i, length), utf8);
                bool allBytesKnown = true;
                for (int b = 0; b < byteCount; b++)
                {
                    allBytesKnown &= _byteTokenIds![utf8[b]] >= 0;
                }

                if (allBytesKnown)
                {
                    // HF adds the bytes without writing a pending unknown token first.
                    for (int b = 0; b < byteCount; b++)
                    {
                        ids.Add(_byteTokenIds![utf8[b]]);
                    }
                }
                else if (_unkId is not null)
                {
                    if (unkPending && !_fuseUnk)
                    {
                        ids.Add(_unkId.Value);
                    }

                    unkPending = true;
                }
            }

            i += length;
        }

        // A run start has already written any pending unknown token, so at most one of these applies.
        if (runStart >= 0)
        {
            ids.AddRange(_engine.EncodeToIds(word[runStart..], considerPreTokenization: false, considerNormalization: false));
        }

        if (unkPending)
        {
            ids.Add(_unkId!.Value);
        }
    }

    private static Dictionary<string, int> ReadVocab(JsonElement model, JsonFields json)
    {
        JsonElement vocabJson = json.RequireObject(model, "vocab", "model");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var seenIds = new HashSet<int>();
        foreach (JsonProperty entry in vocabJson.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw json.Error($"model.vocab[\"{entry.Name}\"]", "must be a non-negative integer id");
            }

            if (!seenIds.Add(id))
            {
                throw json.Error($"model.vocab[\"{entry.Name}\"]", $"id {id} is used by two tokens");
            }

            vocab[entry.Name] = id;
        }

        if (vocab.Count == 0)
        {
            throw json.Error("model.vocab", "is empty");
        }

        return vocab;
    }

    /// <summary>
    /// Reads <c>merges</c> (strings <c>"a b"</c> or pairs <c>["a", "b"]</c>) into the library's
    /// <c>"a b"</c> form, in rank order. A merge listed twice keeps its last rank, as in HF.
    /// </summary>
    private static List<string> ReadMerges(
        JsonElement model, JsonFields json, Dictionary<string, int> vocab, bool modelNeverSeesSpaces)
    {
        var pairs = new List<(string Left, string Right)>();
        if (JsonFields.Get(model, "merges") is not { } mergesJson)
        {
            return [];
        }

        if (mergesJson.ValueKind != JsonValueKind.Array)
        {
            throw json.Error("model.merges", "must be a JSON array");
        }

        int index = 0;
        foreach (JsonElement merge in mergesJson.EnumerateArray())
        {
            string field = $"model.merges[{index++}]";
            (string left, string right) = merge.ValueKind switch
            {
                JsonValueKind.String => SplitMergeString(merge.GetString()!, field, json),
                JsonValueKind.Array when merge.GetArrayLength() == 2
                    && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String
                    => (merge[0].GetString()!, merge[1].GetString()!),
                _ => throw json.Error(field, "must be a string \"a b\" or a pair [\"a\", \"b\"]"),
            };

            foreach (string part in (ReadOnlySpan<string>)[left, right, left + right])
            {
                if (!vocab.ContainsKey(part))
                {
                    throw json.Error(field, $"token '{part}' is not in model.vocab");
                }
            }

            pairs.Add((left, right));
        }

        var lastRank = new Dictionary<(string, string), int>();
        for (int i = 0; i < pairs.Count; i++)
        {
            lastRank[pairs[i]] = i;
        }

        var merges = new List<string>(pairs.Count);
        for (int i = 0; i < pairs.Count; i++)
        {
            (string left, string right) = pairs[i];
            if (lastRank[pairs[i]] != i)
            {
                continue;
            }

            if (left.Contains(' ') || right.Contains(' '))
            {
                if (modelNeverSeesSpaces)
                {
                    continue;
                }

                throw json.Error($"model.merges[{i}]",
                    "merges of tokens containing spaces are only supported when the pipeline replaces spaces first");
            }

            merges.Add($"{left} {right}");
        }

        return merges;
    }

    private static (string, string) SplitMergeString(string merge, string field, JsonFields json)
    {
        int space = merge.IndexOf(' ');
        if (space <= 0 || space == merge.Length - 1 || merge.IndexOf(' ', space + 1) >= 0)
        {
            throw json.Error(field, $"'{merge}' is not of the form \"a b\"");
        }

        return (merge[..space], merge[(space + 1)..]);
    }

    /// <summary>
    /// Cutting a word around unknown characters is exact only if no merge takes a byte token or the
    /// unknown token as one of its halves; real SentencePiece exports have none.
    /// </summary>
    private static void CheckNoMergeTouches(
        List<string> merges, int[] byteTokenIds, Dictionary<string, int> vocab, string? unkToken, JsonFields json)
    {
        var inert = new HashSet<string>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++)
        {
            if (byteTokenIds[b] >= 0)
            {
                inert.Add(ByteToken((byte)b));
            }
        }

        if (unkToken is not null && vocab.ContainsKey(unkToken))
        {
            inert.Add(unkToken);
        }

        foreach (string merge in merges)
        {
            int space = merge.IndexOf(' ');
            if (inert.Contains(merge[..space]) || inert.Contains(merge[(space + 1)..]))
            {
                throw json.Error("model.merges",
                    $"merge '{merge}' involves a byte-fallback or unknown token, which is not supported");
            }
        }
    }
}
