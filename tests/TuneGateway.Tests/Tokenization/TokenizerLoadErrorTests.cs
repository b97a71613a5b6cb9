using System.Text.Json.Nodes;
using TuneGateway.Engine.Tokenization;
using static TuneGateway.Tests.Tokenization.SyntheticTokenizer;

namespace TuneGateway.Tests.Tokenization;

/// <summary>Loading fails with a message that names the file and, where there is one, the field.</summary>
public sealed class TokenizerLoadErrorTests : IDisposable
{
    private readonly SyntheticTokenizer _files = new();

    public void Dispose() => _files.Dispose();

    private TokenizerLoadException LoadFails(JsonObject tokenizer, JsonObject? config = null) =>
        Assert.Throws<TokenizerLoadException>(() => _files.Load(tokenizer, config));

    private void AssertNames(TokenizerLoadException e, string file, string? field, string detail)
    {
        Assert.Equal(file, e.FilePath);
        Assert.Equal(field, e.Field);
        Assert.Contains(file, e.Message);
        if (field is not null)
        {
            Assert.Contains($"'{field}'", e.Message);
        }

        Assert.Contains(detail, e.Message);
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    public void UnsupportedModelType(string type)
    {
        TokenizerLoadException e = LoadFails(Tokenizer(Bpe(["a"], configure: m => m["type"] = type)));
        AssertNames(e, _files.TokenizerPath, "model.type", type);
    }

    [Fact]
    public void MalformedJson()
    {
        _files.WriteRaw("{\"model\": {\"type\": \"BPE\", ");
        var e = Assert.Throws<TokenizerLoadException>(() => HfTokenizer.FromDirectory(_files.Directory));
        AssertNames(e, _files.TokenizerPath, null, "malformed JSON");
    }

    [Fact]
    public void MalformedTokenizerConfig()
    {
        _files.WriteRaw(Tokenizer(Bpe(["a"])).ToJsonString(), "{ not json");
        var e = Assert.Throws<TokenizerLoadException>(() => HfTokenizer.FromDirectory(_files.Directory));
        AssertNames(e, _files.ConfigPath, null, "malformed JSON");
    }

    [Fact]
    public void MissingFiles()
    {
        var e = Assert.Throws<TokenizerLoadException>(() => HfTokenizer.FromDirectory(_files.Directory));
        AssertNames(e, _files.TokenizerPath, null, "does not exist");

        string missingDir = Path.Combine(_files.Directory, "nope");
        e = Assert.Throws<TokenizerLoadException>(() => HfTokenizer.FromDirectory(missingDir));
        AssertNames(e, missingDir, null, "does not exist");

        _files.WriteRaw(Tokenizer(Bpe(["a"])).ToJsonString());
        string missingConfig = Path.Combine(_files.Directory, "other_config.json");
        e = Assert.Throws<TokenizerLoadException>(() => HfTokenizer.FromFiles(_files.TokenizerPath, missingConfig));
        AssertNames(e, missingConfig, null, "does not exist");
    }

    [Fact]
    public void MissingModel()
    {
        JsonObject tokenizer = Tokenizer(Bpe(["a"]));
        tokenizer.Remove("model");
        AssertNames(LoadFails(tokenizer), _files.TokenizerPath, "model", "missing");
    }

    [Fact]
    public void UnsupportedComponents()
    {
        AssertNames(LoadFails(Tokenizer(Bpe(["a"]), preTokenizer: new JsonObject { ["type"] = "Whitespace" })),
            _files.TokenizerPath, "pre_tokenizer.type", "Whitespace");
        AssertNames(LoadFails(Tokenizer(Bpe(["a"]), preTokenizer: JsonNode.Parse(
                """{"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "BertPreTokenizer"}]}"""))),
            _files.TokenizerPath, "pre_tokenizer.pretokenizers[1].type", "BertPreTokenizer");
        AssertNames(LoadFails(Tokenizer(Bpe(["a"]), normalizer: new JsonObject { ["type"] = "Precompiled" })),
            _files.TokenizerPath, "normalizer.type", "Precompiled");
        AssertNames(LoadFails(Tokenizer(Bpe(["a"]), decoder: new JsonObject { ["type"] = "WordPiece" })),
            _files.TokenizerPath, "decoder.type", "WordPiece");
        AssertNames(LoadFails(Tokenizer(Bpe(["a"]), postProcessor: new JsonObject { ["type"] = "Mystery" })),
            _files.TokenizerPath, "post_processor.type", "Mystery");
        AssertNames(LoadFails(Tokenizer(Bpe(["a"], configure: m => m["dropout"] = 0.1))),
            _files.TokenizerPath, "model.dropout", "dropout");
    }

    [Fact]
    public void RegexThatDotNetCannotRun()
    {
        JsonNode split = JsonNode.Parse("""{"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}""")!;
        AssertNames(LoadFails(Tokenizer(Bpe(["a"]), preTokenizer: split)), _files.TokenizerPath, "pre_tokenizer.pattern", "regular expression");
    }

    [Fact]
    public void MergeOfUnknownToken()
    {
        AssertNames(LoadFails(Tokenizer(Bpe(["a", "b"], ["a b"]))), _files.TokenizerPath, "model.merges[0]", "'ab'");
        AssertNames(LoadFails(Tokenizer(Bpe(["a", "b", "ab"], ["a b", "ab"]))), _files.TokenizerPath, "model.merges[1]", "\"a b\"");
    }

    [Fact]
    public void BadAddedTokenAndTemplate()
    {
        JsonObject badAdded = Tokenizer(Bpe(["a"]), added: [Added(1, "<s>")]);
        badAdded["added_tokens"]![0]!.AsObject().Remove("content");
        AssertNames(LoadFails(badAdded), _files.TokenizerPath, "added_tokens[0].content", "missing");

        JsonNode template = JsonNode.Parse("""
            {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [], "special_tokens": {}}
            """)!;
        AssertNames(LoadFails(Tokenizer(Bpe(["a"]), postProcessor: template)), _files.TokenizerPath, "post_processor.special_tokens", "'<s>'");
    }
}
