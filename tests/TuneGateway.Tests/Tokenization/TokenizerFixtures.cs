using System.Text.Json;
using TuneGateway.Tests.Engine;

namespace TuneGateway.Tests.Tokenization;

/// <summary>One HF reference sample. Fields missing from a fixture are null.</summary>
public sealed record TokenizerSample(
    string Text,
    int[] Ids,
    int[]? IdsWithSpecial,
    string Decoded,
    string? DecodedSkipSpecial,
    string[]? Tokens);

/// <summary>The tokenizer reference fixtures under tests/fixtures.</summary>
public static class TokenizerFixtures
{
    /// <summary>The fixtures of tests/fixtures/tokenizers (made with HF tokenizers 0.23).</summary>
    public static IReadOnlyList<string> FamilyNameList { get; } = ["sp-bpe-llama2", "sp-bpe-metaspace", "qwen2-bpe", "llama3-bpe"];

    /// <summary><see cref="FamilyNameList"/> as theory data.</summary>
    public static TheoryData<string> FamilyNames => new(FamilyNameList);

    public static string FamilyDirectory(string name) => Path.Combine(Fixtures.Root, "tokenizers", name);

    /// <summary>Samples of a tokenizers/ fixture: reference.json {"samples": [...]}.</summary>
    public static IReadOnlyList<TokenizerSample> FamilySamples(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FamilyDirectory(name), "reference.json")));
        return doc.RootElement.GetProperty("samples").EnumerateArray().Select(ReadSample).ToArray();
    }

    /// <summary>Samples of llama-tiny: reference.json field "tokenizer", [{text, ids, decoded}].</summary>
    public static IReadOnlyList<TokenizerSample> LlamaTinySamples()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "llama-tiny", "reference.json")));
        return doc.RootElement.GetProperty("tokenizer").EnumerateArray().Select(ReadSample).ToArray();
    }

    private static TokenizerSample ReadSample(JsonElement s) => new(
        s.GetProperty("text").GetString()!,
        Ints(s.GetProperty("ids")),
        s.TryGetProperty("ids_with_special", out var withSpecial) ? Ints(withSpecial) : null,
        s.GetProperty("decoded").GetString()!,
        s.TryGetProperty("decoded_skip_special", out var skip) ? skip.GetString() : null,
        s.TryGetProperty("tokens", out var tokens) ? tokens.EnumerateArray().Select(t => t.GetString()!).ToArray() : null);

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(v => v.GetInt32()).ToArray();

    /// <summary>Shows a string with its control and non-ASCII characters escaped, for failure messages.</summary>
    public static string Show(string? text) => text is null ? "null" : JsonSerializer.Serialize(text);

    public static string Show(IEnumerable<int> ids) => "[" + string.Join(", ", ids) + "]";
}
