using System.Text.Json;
using TuneGateway.Engine.Structured;
using TuneGateway.Gateway.Common;
using TuneGateway.Worker;

namespace TuneGateway.Worker.Tools;

/// <summary>OpenAI's <c>tool_choice</c>.</summary>
internal enum ToolChoice { None, Auto, Required, Named }

/// <summary>
/// A chat request's tools: what the template sees (<see cref="Tools"/>, the request's list as
/// given, as transformers passes <c>tools=</c>), how calls are read from the output and, for
/// <c>required</c> and a named function, the grammar that constrains the output to valid calls.
/// </summary>
internal sealed record ToolPlan(JsonElement Tools, IReadOnlyList<ToolFunction> Functions, ToolChoice Choice, string? NamedFunction, bool Parallel, ToolCallFormat? Format)
{
    /// <summary>Whether outputs are read for calls (not with tool_choice none).</summary>
    public bool ParsesCalls => Choice != ToolChoice.None && Format is not null;

    /// <summary>The calls the output must consist of, or null when the model may answer in text.</summary>
    public GrammarPart? Grammar => Choice switch
    {
        ToolChoice.Required => Format!.Calls(Functions, Parallel),
        ToolChoice.Named => Format!.Calls(Functions.Where(f => f.Name == NamedFunction).ToArray(), parallel: false),
        _ => null,
    };

    /// <summary>OpenAI answers a forced (named) function with finish_reason stop, other calls with tool_calls.</summary>
    public string? FinishReason(string? reason, bool called) =>
        called && reason == "stop" && Choice != ToolChoice.Named ? "tool_calls" : reason;

    /// <summary>The calls of a whole output, at most one without parallel_tool_calls.</summary>
    public (string? Content, IReadOnlyList<ToolCallOut>? Calls) Read(string text)
    {
        if (!ParsesCalls) return (text, null);
        var (content, calls) = Format!.Parse(text);
        if (calls.Count == 0) return (content, null);
        return (content, calls.Take(Parallel ? calls.Count : 1).Select(c => new ToolCallOut(ToolCalls.NewId(), "function", new ToolCallFunctionOut(c.Name, c.Arguments))).ToArray());
    }
}

/// <summary>Reads <c>tools</c>, <c>tool_choice</c> and <c>parallel_tool_calls</c> (400 naming the field).</summary>
internal static class ToolCalls
{
    private const int MaxNameLength = 64;

    public static string NewId() => "call_" + Guid.NewGuid().ToString("N")[..24];

    /// <summary>Null when the request has no tools.</summary>
    public static ToolPlan? Read(RequestFields f, ToolCallFormat? format)
    {
        var tools = f.Get("tools");
        var choiceValue = f.Get("tool_choice");
        bool parallel = f.Bool("parallel_tool_calls") ?? true;
        if (tools is null || RequestFields.IsEmpty(tools.Value))
        {
            if (choiceValue is { } c && !(c.ValueKind == JsonValueKind.String && c.GetString() == "none"))
                throw ApiException.Invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are specified.");
            return null;
        }
        var functions = Functions(tools.Value);
        var (choice, named) = Choice(choiceValue, functions);
        if (choice != ToolChoice.None && format is null)
            throw ApiException.Invalid("tool_choice", $"tool_choice '{ChoiceName(choice)}' needs the server started with --tool-call-parser ({string.Join(", ", ToolCallFormat.Names)}); 'none' works without.");
        return new ToolPlan(tools.Value.Clone(), functions, choice, named, parallel, format);
    }

    private static string ChoiceName(ToolChoice choice) => choice switch
    {
        ToolChoice.Named => "function",
        _ => choice.ToString().ToLowerInvariant(),
    };

    private static List<ToolFunction> Functions(JsonElement tools)
    {
        if (tools.ValueKind != JsonValueKind.Array) throw ApiException.Invalid("tools", "'tools' must be an array of tools.");
        var functions = new List<ToolFunction>();
        int index = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            string where = $"tools[{index++}]";
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function")
                throw ApiException.Invalid("tools", $"{where}.type must be 'function'.");
            if (!tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object
                || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                || name.GetString() is not { Length: > 0 and <= MaxNameLength } functionName || !functionName.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
                throw ApiException.Invalid("tools", $"{where}.function.name is required: letters, digits, '_' and '-', at most {MaxNameLength}.");
            if (functions.Any(fn => fn.Name == functionName)) throw ApiException.Invalid("tools", $"{where}: the function name '{functionName}' is given twice.");
            JsonElement parameters = NoParameters;
            if (function.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null)
            {
                if (p.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("tools", $"{where}.function.parameters must be a JSON Schema object.");
                parameters = p.Clone();
            }
            functions.Add(new ToolFunction(functionName, parameters));
        }
        return functions;
    }

    /// <summary>A function without parameters takes an empty object, as OpenAI documents.</summary>
    private static readonly JsonElement NoParameters = JsonSerializer.SerializeToElement(new { type = "object", properties = new { }, additionalProperties = false });

    private static (ToolChoice, string?) Choice(JsonElement? value, IReadOnlyList<ToolFunction> functions)
    {
        if (value is not { } choice) return (ToolChoice.Auto, null);
        if (choice.ValueKind == JsonValueKind.String)
        {
            return choice.GetString() switch
            {
                "none" => (ToolChoice.None, null),
                "auto" => (ToolChoice.Auto, null),
                "required" => (ToolChoice.Required, null),
                var other => throw ApiException.Invalid("tool_choice", $"Invalid value for 'tool_choice': '{other}'. Supported: 'none', 'auto', 'required' or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}.", "invalid_value"),
            };
        }
        if (choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() == "function"
            && choice.TryGetProperty("function", out var function) && function.ValueKind == JsonValueKind.Object
            && function.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String)
        {
            string named = name.GetString()!;
            if (functions.All(f => f.Name != named)) throw ApiException.Invalid("tool_choice", $"tool_choice names the function '{named}', which is not in 'tools'.");
            return (ToolChoice.Named, named);
        }
        throw ApiException.Invalid("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.");
    }
}
