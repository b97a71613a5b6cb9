using System.Text.Json;

namespace TuneGateway.Controller.Pipelines;

/// <summary>Reads pipeline definitions from a JSON file: an array, <c>{"pipelines": [...]}</c>, or <c>{"TuneGateway": {"Pipelines": [...]}}</c>.</summary>
public static class PipelineConfigFile
{
    public static IReadOnlyList<PipelineDefinition> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"The pipeline configuration '{path}' does not exist.", path);
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            root = document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"'{path}' is not valid JSON: {ex.Message}", ex);
        }
        JsonElement? list = root.ValueKind == JsonValueKind.Array ? root
            : Find(root, "pipelines") is { } direct ? direct
            : Find(root, "TuneGateway") is { } section && Find(section, "Pipelines") is { } nested ? nested
            : null;
        if (list is null) return [];
        if (list.Value.ValueKind != JsonValueKind.Array) throw new ArgumentException($"'{path}': the pipelines must be a JSON array.");
        var result = new List<PipelineDefinition>();
        int index = 0;
        foreach (var item in list.Value.EnumerateArray())
        {
            try
            {
                result.Add(PipelineDefinition.FromJson(item));
            }
            catch (Exception ex) when (ex is ArgumentException or JsonException or FormatException)
            {
                throw new ArgumentException($"'{path}', pipeline {index}: {ex.Message}", ex);
            }
            index++;
        }
        var duplicate = result.GroupBy(p => p.Adapter).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"'{path}': adapter '{duplicate.Key}' has more than one pipeline.");
        return result;
    }

    private static JsonElement? Find(JsonElement element, string name)
    {
        if (element.ValueKind != JsonValueKind.Object) return null;
        foreach (var property in element.EnumerateObject())
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase)) return property.Value;
        return null;
    }
}
