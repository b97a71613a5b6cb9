using Microsoft.AspNetCore.Http;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>
/// vLLM's <c>POST /tokenize</c> and <c>POST /detokenize</c>. Adapters share the base model's
/// tokenizer, so any model the worker serves (base or adapter) answers with the same ids; the model
/// name is still checked, as the generation endpoints check it (key's models, known adapter).
/// </summary>
internal static class TokenizeEndpoints
{
    private static readonly IReadOnlySet<string> TextParameters = new HashSet<string>(
        ["model", "prompt", "add_special_tokens", "return_token_strs"], StringComparer.Ordinal);

    private static readonly IReadOnlySet<string> ChatParameters = new HashSet<string>(
        ["model", "messages", "add_generation_prompt", "add_special_tokens", "chat_template_kwargs", "return_token_strs"], StringComparer.Ordinal);

    private static readonly IReadOnlySet<string> DetokenizeParameters = new HashSet<string>(["model", "tokens"], StringComparer.Ordinal);

    /// <summary>
    /// <c>{model, prompt, add_special_tokens = true}</c> or <c>{model, messages, add_generation_prompt = true,
    /// add_special_tokens = false, chat_template_kwargs}</c> → <c>{count, max_model_len, tokens, token_strs}</c>.
    /// </summary>
    public static async Task<IResult> TokenizeAsync(HttpContext context, EngineHost host)
    {
        var engine = host.Require();
        using var document = await RequestFields.ReadBodyAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        bool chat = document.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && document.RootElement.TryGetProperty("messages", out _);
        var f = RequestFields.Parse(document, chat ? ChatParameters : TextParameters);
        CompletionEndpoints.ResolveModel(context, engine, f);
        IReadOnlyList<int> tokens;
        if (chat)
        {
            string rendered = CompletionEndpoints.RenderChat(f, engine, CompletionEndpoints.ReadMessages(f));
            // The template writes the special tokens it wants; adding more would double the BOS.
            tokens = engine.Encode(rendered, f.Bool("add_special_tokens") ?? false);
        }
        else
        {
            string prompt = f.String("prompt") ?? throw ApiException.Invalid("prompt", "'prompt' (or 'messages') is required.");
            tokens = engine.Encode(prompt, f.Bool("add_special_tokens") ?? true);
        }
        bool strings = f.Bool("return_token_strs") ?? false;
        f.RejectUnread(CompletionEndpoints.UnsupportedParameters);
        var strs = strings ? tokens.Select(t => engine.Tokenizer.IdToToken(t) ?? "").ToArray() : null;
        return Results.Json(new TokenizeResponse(tokens.Count, engine.MaxModelLength, tokens, strs), ServerJson.Options);
    }

    /// <summary><c>{model, tokens}</c> → <c>{prompt}</c>: the ids decoded with their special tokens, as vLLM does.</summary>
    public static async Task<IResult> DetokenizeAsync(HttpContext context, EngineHost host)
    {
        var engine = host.Require();
        using var document = await RequestFields.ReadBodyAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        var f = RequestFields.Parse(document, DetokenizeParameters);
        CompletionEndpoints.ResolveModel(context, engine, f);
        if (!f.Has("tokens")) throw ApiException.Invalid("tokens", "'tokens' is required.");
        var tokens = f.Ints("tokens");
        foreach (int id in tokens)
        {
            if (id < 0 || id >= engine.Config.VocabSize)
                throw ApiException.Invalid("tokens", $"Token id {id} is out of the vocabulary (0 to {engine.Config.VocabSize - 1}).");
        }
        f.RejectUnread(CompletionEndpoints.UnsupportedParameters);
        return Results.Json(new DetokenizeResponse(engine.Tokenizer.Decode(tokens)), ServerJson.Options);
    }
}
