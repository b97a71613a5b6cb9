using System.Text.Json.Nodes;
using TuneGateway.Engine.Tokenization;

namespace TuneGateway.Tests.Tokenization;

/// <summary>Writes small hand-made tokenizer.json files for unit tests.</summary>
public sealed class SyntheticTokenizer : IDisposable
{
    public SyntheticTokenizer()
    {
        Directory = Path.Combine(Path.GetTempPath(), "tg-tokenizer-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Directory { get; }

    public string TokenizerPath => Path.Combine(Directory, "tokenizer.json");

    public string ConfigPath => Path.Combine(Directory, "tokenizer_config.json");

    /// <summary>A BPE model section: vocab ids in the order given, merges as "a b" strings.</summary>
    public static JsonObject Bpe(IEnumerable<string> vocab, IEnumerable<string>? merges = null, Action<JsonObject>? configure = null)
    {
        var vocabJson = new JsonObject();
        int id = 0;
        foreach (string token in vocab)
        {
            vocabJson[token] = id++;
        }

        var model = new JsonObject
        {
            ["type"] = "BPE",
            ["dropout"] = null,
            ["unk_token"] = null,
            ["fuse_unk"] = false,
            ["byte_fallback"] = false,
            ["ignore_merges"] = false,
            ["vocab"] = vocabJson,
            ["merges"] = new JsonArray((merges ?? []).Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
        };
        configure?.Invoke(model);
        return model;
    }

    /// <summary>An added_tokens entry.</summary>
    public static JsonObject Added(int id, string content, bool special = true, bool lstrip = false, bool rstrip = false,
        bool singleWord = false, bool normalized = false) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = singleWord,
        ["lstrip"] = lstrip,
        ["rstrip"] = rstrip,
        ["normalized"] = normalized,
        ["special"] = special,
    };

    /// <summary>A whole tokenizer.json with a Fuse decoder unless another is given.</summary>
    public static JsonObject Tokenizer(JsonObject model, JsonNode? normalizer = null, JsonNode? preTokenizer = null,
        IEnumerable<JsonObject>? added = null, JsonNode? postProcessor = null, JsonNode? decoder = null) => new()
    {
        ["version"] = "1.0",
        ["added_tokens"] = new JsonArray((added ?? []).Select(a => (JsonNode?)a).ToArray()),
        ["normalizer"] = normalizer,
        ["pre_tokenizer"] = preTokenizer,
        ["post_processor"] = postProcessor,
        ["decoder"] = decoder ?? new JsonObject { ["type"] = "Fuse" },
        ["model"] = model,
    };

    public HfTokenizer Load(JsonObject tokenizer, JsonObject? config = null)
    {
        WriteRaw(tokenizer.ToJsonString(), config?.ToJsonString());
        return HfTokenizer.FromDirectory(Directory);
    }

    public void WriteRaw(string tokenizerJson, string? configJson = null)
    {
        File.WriteAllText(TokenizerPath, tokenizerJson);
        if (configJson is not null)
        {
            File.WriteAllText(ConfigPath, configJson);
        }
        else if (File.Exists(ConfigPath))
        {
            File.Delete(ConfigPath);
        }
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
