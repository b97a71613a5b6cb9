namespace TuneGateway.Engine.Chat;

/// <summary>
/// One message of a conversation, as a chat template sees it: a dictionary with the keys <c>role</c>,
/// <c>content</c>, <c>name</c>, <c>tool_calls</c> and <c>tool_call_id</c>. A key whose value is null is left
/// out, so that <c>message.content is defined</c> and <c>'tool_calls' in message</c> behave as templates expect.
/// </summary>
/// <param name="Role">"system", "user", "assistant", "tool", ...</param>
/// <param name="Content">The text; null for an assistant message that only calls tools.</param>
public sealed record ChatMessage(string Role, string? Content)
{
    /// <summary>The tool's name on a <c>tool</c> message (or a participant's name).</summary>
    public string? Name { get; init; }

    /// <summary>The tool calls of an assistant message.</summary>
    public IReadOnlyList<ChatToolCall>? ToolCalls { get; init; }

    /// <summary>On a <c>tool</c> message: the id of the call this is the result of.</summary>
    public string? ToolCallId { get; init; }

    /// <summary>The message as the template sees it.</summary>
    internal Dictionary<string, object?> ToTemplateValue()
    {
        var value = new Dictionary<string, object?>(StringComparer.Ordinal) { ["role"] = Role };
        if (Content is not null)
        {
            value["content"] = Content;
        }

        if (Name is not null)
        {
            value["name"] = Name;
        }

        if (ToolCalls is not null)
        {
            value["tool_calls"] = ToolCalls.Select(call => (object?)call.ToTemplateValue()).ToList();
        }

        if (ToolCallId is not null)
        {
            value["tool_call_id"] = ToolCallId;
        }

        return value;
    }
}

/// <summary>
/// A tool call made by the assistant, seen by templates as
/// <c>{"id": ..., "type": "function", "function": {"name": ..., "arguments": ...}}</c>.
/// </summary>
/// <param name="Id">The call id.</param>
/// <param name="Name">The function's name.</param>
/// <param name="Arguments">
/// The arguments as JSON-like data (a dictionary, or a <see cref="System.Text.Json.JsonElement"/>): templates
/// such as Llama 3.1's and Qwen 2.5's print them with <c>tojson</c>, so pass the parsed object, not the JSON text
/// (a string would be printed as a quoted JSON string).
/// </param>
public sealed record ChatToolCall(string Id, string Name, object? Arguments)
{
    internal Dictionary<string, object?> ToTemplateValue() => new(StringComparer.Ordinal)
    {
        ["id"] = Id,
        ["type"] = "function",
        ["function"] = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["name"] = Name,
            ["arguments"] = Jinja.ValueConverter.ToTemplateValue(Arguments),
        },
    };
}
