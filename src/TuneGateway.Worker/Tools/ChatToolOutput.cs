using TuneGateway.Engine.Serving;
using TuneGateway.Worker;

namespace TuneGateway.Worker.Tools;

/// <summary>
/// Shapes chat answers when the request has tools: whole answers get <c>tool_calls</c> read from
/// the text (and <c>content</c> null when there is none besides them); streams get content and
/// tool-call deltas per choice. Without tools (or with tool_choice none) the text is the content.
/// </summary>
internal sealed class ChatToolOutput(ToolPlan? tools, int choices)
{
    private readonly ToolCallStream?[] _streams = Enumerable.Range(0, choices)
        .Select(_ => tools is { ParsesCalls: true } ? new ToolCallStream(tools.Format!) : null).ToArray();

    public (ChatMessageOut Message, string? FinishReason) Answer(string text, FinishReason reason)
    {
        string? finish = GenerationRun.FinishReasonText(reason);
        if (tools is null) return (new ChatMessageOut("assistant", text), finish);
        var (content, calls) = tools.Read(text);
        return (new ChatMessageOut("assistant", content) { ToolCalls = calls }, tools.FinishReason(finish, calls is not null));
    }

    /// <summary>The delta for a piece of streamed text; null when it says nothing yet (held back).</summary>
    public ChatDelta? Delta(int choice, string text, bool final = false)
    {
        if (_streams[choice] is not { } stream) return text.Length > 0 || final ? new ChatDelta { Content = text.Length > 0 ? text : null } : null;
        var (content, calls) = stream.Append(text, final);
        return content is null && calls.Count == 0 ? null : new ChatDelta { Content = content, ToolCalls = calls.Count > 0 ? calls : null };
    }

    public string? FinishReason(int choice, FinishReason reason)
    {
        string? finish = GenerationRun.FinishReasonText(reason);
        return tools is null || _streams[choice] is not { } stream ? finish : tools.FinishReason(finish, stream.CallIds.Count > 0);
    }
}
