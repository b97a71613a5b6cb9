using System.Text.Json;

namespace TuneGateway.Tests.Engine;

/// <summary>Paths and reference data of the fixtures under tests/fixtures.</summary>
public static class Fixtures
{
    public static string Root { get; } = FindRoot();

    public static string LlamaTiny => Path.Combine(Root, "llama-tiny", "base");
    public static string LlamaTinyAdapters => Path.Combine(Root, "llama-tiny", "adapters");
    public static string Models => Path.Combine(Root, "models");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "fixtures");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
    }

    public static ReferenceFile LoadReference(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var cases = new Dictionary<string, IReadOnlyList<ReferenceCase>>();
        var merged = new Dictionary<string, float[]>();
        foreach (var property in doc.RootElement.GetProperty("cases").EnumerateObject())
        {
            if (property.Value.ValueKind == JsonValueKind.Array && property.Value.GetArrayLength() > 0 &&
                property.Value[0].ValueKind == JsonValueKind.Number)
            {
                merged[property.Name] = property.Value.EnumerateArray().Select(v => v.GetSingle()).ToArray();
                continue;
            }
            cases[property.Name] = property.Value.EnumerateArray().Select(c => new ReferenceCase(
                c.GetProperty("prompt_ids").EnumerateArray().Select(v => v.GetInt32()).ToArray(),
                c.GetProperty("last_logits").EnumerateArray().Select(v => v.GetSingle()).ToArray(),
                c.GetProperty("greedy_ids").EnumerateArray().Select(v => v.GetInt32()).ToArray(),
                c.GetProperty("greedy_logprobs").EnumerateArray().Select(v => v.GetSingle()).ToArray())).ToArray();
        }
        return new ReferenceFile(cases, merged);
    }
}

public sealed record ReferenceCase(int[] PromptIds, float[] LastLogits, int[] GreedyIds, float[] GreedyLogprobs);

public sealed record ReferenceFile(IReadOnlyDictionary<string, IReadOnlyList<ReferenceCase>> Cases, IReadOnlyDictionary<string, float[]> MergedLogits);
