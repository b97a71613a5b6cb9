using System.Text.Json;
using TuneGateway.Engine.Chat;

namespace TuneGateway.Tests.Chat;

/// <summary>
/// The chat-template fixtures: real templates under tests/fixtures/chat_templates and the renders Python's jinja2
/// produced for them (expected.json, written by tools/fixtures/make_chat_fixtures.py).
/// </summary>
public static class ChatFixtures
{
    /// <summary>tests/fixtures/chat_templates.</summary>
    public static string Directory { get; } = FindDirectory();

    private static readonly Lazy<JsonDocument> ExpectedDocument = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "expected.json"))));

    /// <summary>The root of expected.json.</summary>
    public static JsonElement Expected => ExpectedDocument.Value.RootElement;

    /// <summary>The clock the generator gave strftime_now(), as a time provider in UTC.</summary>
    public static TimeProvider Clock { get; } = new FixedTimeProvider(
        new DateTimeOffset(DateTime.Parse(Expected.GetProperty("strftime_now").GetString()!, System.Globalization.CultureInfo.InvariantCulture), TimeSpan.Zero));

    /// <summary>Template name to parsed template.</summary>
    public static IReadOnlyDictionary<string, ChatTemplate> Templates { get; } = LoadTemplates();

    /// <summary>The cases of expected.json by id ("template/conversation/gen|nogen").</summary>
    public static IReadOnlyDictionary<string, JsonElement> Cases { get; } =
        Expected.GetProperty("cases").EnumerateArray().ToDictionary(CaseId);

    /// <summary>The snippets of expected.json by name.</summary>
    public static IReadOnlyDictionary<string, JsonElement> Snippets { get; } =
        Expected.GetProperty("snippets").EnumerateArray().ToDictionary(s => s.GetProperty("name").GetString()!);

    public static string CaseId(JsonElement c) =>
        $"{c.GetProperty("template").GetString()}/{c.GetProperty("conversation").GetString()}/" +
        (c.GetProperty("add_generation_prompt").GetBoolean() ? "gen" : "nogen");

    private static string FindDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "fixtures", "chat_templates");
            if (System.IO.Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException("tests/fixtures/chat_templates not found above " + AppContext.BaseDirectory);
    }

    private static Dictionary<string, ChatTemplate> LoadTemplates()
    {
        var templates = new Dictionary<string, ChatTemplate>();
        foreach (var entry in Expected.GetProperty("templates").EnumerateObject())
        {
            var path = Path.Combine(Directory, entry.Value.GetString()!);
            templates[entry.Name] = ChatTemplate.FromFile(path).WithTimeProvider(Clock);
        }

        return templates;
    }

    /// <summary>A message of expected.json as a <see cref="ChatMessage"/>.</summary>
    public static ChatMessage ToMessage(JsonElement m)
    {
        string? Optional(string name) => m.TryGetProperty(name, out var v) ? v.GetString() : null;
        IReadOnlyList<ChatToolCall>? calls = null;
        if (m.TryGetProperty("tool_calls", out var toolCalls))
        {
            calls = toolCalls.EnumerateArray().Select(c => new ChatToolCall(
                c.GetProperty("id").GetString()!,
                c.GetProperty("function").GetProperty("name").GetString()!,
                c.GetProperty("function").GetProperty("arguments").Clone())).ToList();
        }

        return new ChatMessage(m.GetProperty("role").GetString()!, Optional("content"))
        {
            Name = Optional("name"),
            ToolCalls = calls,
            ToolCallId = Optional("tool_call_id"),
        };
    }

    /// <summary>A JSON object as template variables (JsonElement values, which the template converts).</summary>
    public static Dictionary<string, object?> ToVariables(JsonElement obj) =>
        obj.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
}

/// <summary>A clock stopped at one instant, in a UTC local time zone.</summary>
public sealed class FixedTimeProvider(DateTimeOffset now) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => now;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
}
