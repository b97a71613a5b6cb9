using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using TuneGateway.Engine.Chat;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using TuneGateway.Worker.Tools;

namespace TuneGateway.Worker;

/// <summary>
/// <c>POST /v1/completions</c> and <c>POST /v1/chat/completions</c>: validate the request
/// (400 naming the field), run it on the engine, answer in OpenAI's JSON or server-sent events.
/// </summary>
internal static class CompletionEndpoints
{
    private const int MaxChoices = 64;

    /// <summary>Parameters both endpoints take (see <see cref="ReadCommon"/>).</summary>
    private static readonly string[] CommonParameters =
    [
        "model", "max_tokens", "n", "presence_penalty", "frequency_penalty", "logit_bias", "user", "stop", "stream", "stream_options",
        "top_k", "temperature", "top_p", "seed", "stop_token_ids", "ignore_eos", "return_token_ids", "min_p", "repetition_penalty",
        "min_tokens", "include_stop_str_in_output", "truncate_prompt_tokens", "response_format", "logprobs",
    ];

    /// <summary>Every parameter <c>/v1/completions</c> reads; anything else is refused with a 400 naming it.</summary>
    internal static readonly IReadOnlySet<string> CompletionParameters = new HashSet<string>([.. CommonParameters, "prompt", "echo", "suffix", "best_of"], StringComparer.Ordinal);

    /// <summary>Every parameter <c>/v1/chat/completions</c> reads; anything else is refused with a 400 naming it.</summary>
    internal static readonly IReadOnlySet<string> ChatParameters = new HashSet<string>(
        [.. CommonParameters, "messages", "tools", "tool_choice", "parallel_tool_calls", "top_logprobs", "chat_template_kwargs", "add_generation_prompt", "max_completion_tokens"], StringComparer.Ordinal);

    /// <summary>Known parameters (vLLM's and OpenAI's) this server refuses, with why; a separate issue covers structured outputs.</summary>
    internal static readonly IReadOnlyDictionary<string, string> UnsupportedParameters = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["guided_json"] = "guided decoding (structured outputs) is not implemented",
        ["guided_regex"] = "guided decoding (structured outputs) is not implemented",
        ["guided_choice"] = "guided decoding (structured outputs) is not implemented",
        ["guided_grammar"] = "guided decoding (structured outputs) is not implemented",
        ["guided_decoding_backend"] = "guided decoding (structured outputs) is not implemented",
        ["guided_whitespace_pattern"] = "guided decoding (structured outputs) is not implemented",
        ["structured_outputs"] = "guided decoding (structured outputs) is not implemented",
        ["functions"] = "legacy function calling is not implemented",
        ["function_call"] = "legacy function calling is not implemented",
    };

    public static async Task CompletionsAsync(HttpContext context, EngineHost host)
    {
        var engine = host.Require();
        using var document = await RequestFields.ReadBodyAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        var f = RequestFields.Parse(document, CompletionParameters);
        string model = ResolveModel(context, engine, f);
        var prompts = ReadPrompts(f, engine);
        int? logprobs = f.Int("logprobs", 0, SamplingFields.MaxTopLogprobs);
        bool echo = f.Bool("echo") ?? false;
        f.RejectUnsupported("suffix", RequestFields.IsEmpty, "insertion is not supported");
        var plan = ReadCommon(f, engine, model, prompts, defaultMaxTokens: _ => 16, logprobs is not null, logprobs ?? 0);
        plan = SamplingFields.ApplyBestOf(plan, f.Int("best_of", 1, MaxChoices), MaxChoices) with
        {
            EchoPrompts = echo ? plan.Prompts.Select(p => engine.Tokenizer.Decode(p, skipSpecialTokens: true)).ToArray() : null,
            // echo with logprobs scores the prompt too, with as many alternatives as the generated tokens get.
            Sampling = echo && logprobs is not null ? plan.Sampling with { PromptLogprobs = logprobs } : plan.Sampling,
        };
        f.RejectUnread(UnsupportedParameters);

        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var run = GenerationRun.Start(engine, plan, context.RequestAborted);
        try
        {
            if (plan.Stream) await StreamCompletionAsync(context, engine, plan, run, id, created).ConfigureAwait(false);
            else await AnswerCompletionAsync(context, engine, plan, run, id, created).ConfigureAwait(false);
        }
        finally
        {
            run.Cancel();
        }
    }

    public static async Task ChatCompletionsAsync(HttpContext context, EngineHost host)
    {
        var engine = host.Require();
        using var document = await RequestFields.ReadBodyAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        var f = RequestFields.Parse(document, ChatParameters);
        string model = ResolveModel(context, engine, f);
        var messages = ReadMessages(f);
        var tools = ToolCalls.Read(f, host.ToolCallFormat);
        bool logprobs = f.Bool("logprobs") ?? false;
        int? top = f.Int("top_logprobs", 0, SamplingFields.MaxTopLogprobs);
        if (top is > 0 && !logprobs) throw ApiException.Invalid("top_logprobs", "'top_logprobs' requires 'logprobs': true.");
        string prompt = RenderChat(f, engine, messages, tools);
        var ids = engine.Encode(prompt, addSpecialTokens: false);
        var plan = ReadCommon(f, engine, model, [ids], defaultMaxTokens: length => Math.Max(1, engine.MaxModelLength - length), logprobs, top ?? 0,
            maxTokensFields: ["max_completion_tokens", "max_tokens"]);
        plan = WithTools(engine, plan, tools);
        f.RejectUnread(UnsupportedParameters);

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var run = GenerationRun.Start(engine, plan, context.RequestAborted);
        try
        {
            if (plan.Stream) await StreamChatAsync(context, engine, plan, run, id, created).ConfigureAwait(false);
            else await AnswerChatAsync(context, engine, plan, run, id, created).ConfigureAwait(false);
        }
        finally
        {
            run.Cancel();
        }
    }

    /// <summary>tool_choice required or a named function holds the output to valid calls in the parser's format.</summary>
    private static GenerationPlan WithTools(InferenceEngine engine, GenerationPlan plan, ToolPlan? tools)
    {
        if (tools is null) return plan;
        plan = plan with { Tools = tools, KeepSpecialTokens = tools.ParsesCalls && tools.Format!.KeepsSpecialTokens };
        if (tools.Grammar is not { } calls) return plan;
        if (plan.Grammar is not null) throw ApiException.Invalid("tool_choice", "A required or named tool_choice cannot be combined with a JSON response_format.");
        StructuredRequests.RejectConflicts(plan.Sampling, "a required or named tool_choice");
        return plan with { Grammar = StructuredRequests.Compile(engine, calls, "tools") };
    }

    internal static string ResolveModel(HttpContext context, InferenceEngine engine, RequestFields f)
    {
        string model = f.RequiredString("model");
        AuthSetup.EnsureModelAllowed(context, model);
        if (!engine.Serves(model)) throw GenerationRun.Translate(engine.Adapters.Unknown(model));
        return model;
    }

    /// <summary><c>prompt</c>: a string, an array of token ids, or a batch of either.</summary>
    private static IReadOnlyList<IReadOnlyList<int>> ReadPrompts(RequestFields f, InferenceEngine engine)
    {
        var value = f.Get("prompt") ?? throw ApiException.Invalid("prompt", "'prompt' is required.");
        const string shape = "'prompt' must be a string, an array of token ids, or an array of either.";
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                return [engine.Encode(value.GetString()!)];
            case JsonValueKind.Array when value.GetArrayLength() == 0:
                throw ApiException.Invalid("prompt", "'prompt' must not be empty.");
            case JsonValueKind.Array:
                var items = value.EnumerateArray().ToArray();
                if (items.All(e => e.ValueKind == JsonValueKind.Number)) return [TokenIds(value)];
                if (items.All(e => e.ValueKind == JsonValueKind.String)) return items.Select(e => engine.Encode(e.GetString()!)).ToArray();
                if (items.All(e => e.ValueKind == JsonValueKind.Array)) return items.Select(TokenIds).ToArray();
                throw ApiException.Invalid("prompt", shape);
            default:
                throw ApiException.Invalid("prompt", shape);
        }

        static IReadOnlyList<int> TokenIds(JsonElement array) =>
            array.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id) ? id
                : throw ApiException.Invalid("prompt", "Token ids in 'prompt' must be integers.")).ToArray();
    }

    /// <summary>Sampling and answer options shared by both endpoints.</summary>
    private static GenerationPlan ReadCommon(RequestFields f, InferenceEngine engine, string model, IReadOnlyList<IReadOnlyList<int>> prompts,
        Func<int, int> defaultMaxTokens, bool logprobs, int topLogprobs, string[]? maxTokensFields = null)
    {
        int? maxTokens = SamplingFields.MaxTokens(f, maxTokensFields ?? ["max_tokens"]);
        var format = StructuredRequests.ResponseFormat(f);
        prompts = Truncate(f, engine, prompts);
        int n = f.Int("n", 1, MaxChoices) ?? 1;
        if (n * prompts.Count > MaxChoices) throw ApiException.Invalid("n", $"At most {MaxChoices} choices per request (prompts × n).");
        _ = f.String("user");
        var stop = f.Strings("stop");
        if (stop.Any(s => s.Length == 0)) throw ApiException.Invalid("stop", "Stop strings must not be empty.");
        bool includeUsage = false;
        if (f.Get("stream_options") is { } options)
        {
            if (options.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("stream_options", "'stream_options' must be an object.");
            if (options.TryGetProperty("include_usage", out var usage) && usage.ValueKind != JsonValueKind.Null)
            {
                if (usage.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    throw ApiException.Invalid("stream_options", "'stream_options.include_usage' must be true or false.");
                includeUsage = usage.GetBoolean();
            }
        }
        int topK = f.Int("top_k", -1, int.MaxValue) ?? 0;
        var sampling = new SamplingParams
        {
            MaxTokens = maxTokens ?? defaultMaxTokens(prompts.Max(p => p.Count)),
            Temperature = f.Double("temperature", 0, 2) ?? 1.0,
            TopP = f.Double("top_p", 0, 1, minExclusive: true) ?? 1.0,
            TopK = topK < 0 ? 0 : topK,
            Seed = f.Long("seed"),
            Stop = stop,
            StopTokenIds = f.Ints("stop_token_ids"),
            IgnoreEos = f.Bool("ignore_eos") ?? false,
            MinTokens = f.Int("min_tokens", 0, int.MaxValue) ?? 0,
            IncludeStopStringInOutput = f.Bool("include_stop_str_in_output") ?? false,
            MinP = f.Double("min_p", 0, 1) ?? 0,
            RepetitionPenalty = f.Double("repetition_penalty", 0, MaxRepetitionPenalty, minExclusive: true) ?? 1.0,
            PresencePenalty = f.Double("presence_penalty", -SamplingParams.MaxPenalty, SamplingParams.MaxPenalty) ?? 0,
            FrequencyPenalty = f.Double("frequency_penalty", -SamplingParams.MaxPenalty, SamplingParams.MaxPenalty) ?? 0,
            LogitBias = SamplingFields.LogitBias(f, engine.Config.VocabSize),
            Logprobs = logprobs,
            TopLogprobs = topLogprobs,
        };
        if (format is not null) StructuredRequests.RejectConflicts(sampling, "a JSON response_format");
        return new GenerationPlan
        {
            Model = model,
            Prompts = prompts,
            Sampling = sampling,
            N = n,
            Stream = f.Bool("stream") ?? false,
            IncludeUsage = includeUsage,
            Logprobs = logprobs,
            ReturnTokenIds = f.Bool("return_token_ids") ?? false,
            Grammar = format is null ? null : StructuredRequests.Compile(engine, format, "response_format"),
        };
    }

    /// <summary>
    /// The message roles OpenAI's chat API takes (less the deprecated <c>function</c>, whose
    /// legacy function calling this server does not implement).
    /// </summary>
    internal static readonly string[] ChatRoles = ["system", "developer", "user", "assistant", "tool"];

    /// <summary>A generous bound (vLLM sets none) that keeps the penalty a finite float.</summary>
    private const double MaxRepetitionPenalty = 1e6;

    /// <summary>
    /// <c>truncate_prompt_tokens</c>: keep the last k tokens of each prompt (-1: the model's context
    /// length), as vLLM does; the end of a prompt is what the completion continues.
    /// </summary>
    private static IReadOnlyList<IReadOnlyList<int>> Truncate(RequestFields f, InferenceEngine engine, IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        if (f.Int("truncate_prompt_tokens", -1, int.MaxValue) is not int keep) return prompts;
        if (keep == 0) throw ApiException.Invalid("truncate_prompt_tokens", "'truncate_prompt_tokens' must be at least 1, or -1 for the model's context length.");
        if (keep == -1) keep = engine.MaxModelLength;
        return prompts.Select(p => p.Count <= keep ? p : (IReadOnlyList<int>)p.Skip(p.Count - keep).ToArray()).ToArray();
    }

    /// <summary>
    /// <c>messages</c> through the chat template, with <c>add_generation_prompt</c> and
    /// <c>chat_template_kwargs</c>; template errors are 400s naming <c>messages</c>.
    /// </summary>
    internal static string RenderChat(RequestFields f, InferenceEngine engine, IReadOnlyList<ChatMessage> messages, ToolPlan? tools = null)
    {
        var extra = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (f.Get("chat_template_kwargs") is { } kwargs)
        {
            if (kwargs.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("chat_template_kwargs", "'chat_template_kwargs' must be an object.");
            foreach (var property in kwargs.EnumerateObject()) extra[property.Name] = property.Value.Clone();
        }
        // As transformers' apply_chat_template(tools=...): the request's tool list, as given.
        if (tools is not null) extra["tools"] = tools.Tools;

        try
        {
            return engine.RenderChat(messages, f.Bool("add_generation_prompt") ?? true, extra);
        }
        catch (ChatTemplateException ex)
        {
            throw ApiException.Invalid("messages", ex.Message, "chat_template_error");
        }
    }

    /// <summary><c>messages</c> as the chat template sees them; text content parts are joined.</summary>
    internal static IReadOnlyList<ChatMessage> ReadMessages(RequestFields f)
    {
        var value = f.Get("messages") ?? throw ApiException.Invalid("messages", "'messages' is required.");
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            throw ApiException.Invalid("messages", "'messages' must be a non-empty array of messages.");
        var messages = new List<ChatMessage>();
        int index = 0;
        foreach (var m in value.EnumerateArray())
        {
            string where = $"messages[{index++}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("messages", $"{where} must be an object.");
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String || role.GetString() is not { Length: > 0 } roleName)
                throw ApiException.Invalid($"{where}.role", $"{where}.role is required.");
            // Templates render whatever role they are given; OpenAI refuses roles outside its list, and so does this server.
            if (!ChatRoles.Contains(roleName))
                throw ApiException.Invalid($"{where}.role", $"Invalid value for {where}.role: '{roleName}'. Supported values are: {string.Join(", ", ChatRoles.Select(r => $"'{r}'"))}.", "invalid_value");
            string? content = null;
            if (m.TryGetProperty("content", out var c))
            {
                content = c.ValueKind switch
                {
                    JsonValueKind.Null => null,
                    JsonValueKind.String => c.GetString(),
                    JsonValueKind.Array => string.Join("\n", c.EnumerateArray().Select(part =>
                        part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == "text"
                            && part.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String
                            ? text.GetString()
                            : throw ApiException.Invalid("messages", $"{where}.content: only text parts are supported."))),
                    _ => throw ApiException.Invalid("messages", $"{where}.content must be a string or an array of text parts."),
                };
            }
            messages.Add(new ChatMessage(roleName, content)
            {
                Name = OptionalString(m, "name", where),
                ToolCallId = OptionalString(m, "tool_call_id", where),
                ToolCalls = ReadToolCalls(m, where),
            });
        }
        return messages;
    }

    private static string? OptionalString(JsonElement message, string name, string where) =>
        !message.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : throw ApiException.Invalid("messages", $"{where}.{name} must be a string.");

    private static IReadOnlyList<ChatToolCall>? ReadToolCalls(JsonElement message, string where)
    {
        if (!message.TryGetProperty("tool_calls", out var calls) || calls.ValueKind == JsonValueKind.Null) return null;
        if (calls.ValueKind != JsonValueKind.Array) throw ApiException.Invalid("messages", $"{where}.tool_calls must be an array.");
        return calls.EnumerateArray().Select(call =>
        {
            if (call.ValueKind != JsonValueKind.Object || !call.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object
                || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                throw ApiException.Invalid("messages", $"{where}.tool_calls entries need function.name.");
            string id = call.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.String ? i.GetString()! : "";
            object? arguments = null;
            if (function.TryGetProperty("arguments", out var args))
            {
                // OpenAI sends arguments as JSON text; templates print them with tojson, so pass the parsed value.
                arguments = args.ValueKind == JsonValueKind.String ? TryParseJson(args.GetString()!) : args.Clone();
            }
            return new ChatToolCall(id, name.GetString()!, arguments);
        }).ToArray();

        static object TryParseJson(string text)
        {
            try
            {
                using var doc = JsonDocument.Parse(text);
                return doc.RootElement.Clone();
            }
            catch (JsonException)
            {
                return text;
            }
        }
    }

    private static Usage UsageOf(GenerationPlan plan, IEnumerable<GenerationFinished?> finished)
    {
        int prompt = plan.Prompts.Sum(p => p.Count);
        int completion = finished.Sum(f => f?.CompletionTokens ?? 0);
        return new Usage(prompt, completion, prompt + completion);
    }

    /// <summary>Errors and aborts of a finished non-streaming run, as the API reports them.</summary>
    private static void ThrowIfFailed(HttpContext context, IReadOnlyList<ChoiceResult> results)
    {
        foreach (var r in results)
        {
            if (r.Finished is null || r.Finished.Reason == FinishReason.Abort)
            {
                context.RequestAborted.ThrowIfCancellationRequested();
                throw new ApiException(StatusCodes.Status503ServiceUnavailable, r.Finished?.Error ?? "The request was aborted.", ApiErrorTypes.Unavailable);
            }
            if (r.Finished.Reason == FinishReason.Error)
                throw new ApiException(StatusCodes.Status500InternalServerError, r.Finished.Error ?? "The engine failed.", ApiErrorTypes.Server);
        }
    }

    private static async Task AnswerCompletionAsync(HttpContext context, InferenceEngine engine, GenerationPlan plan, GenerationRun run, string id, long created)
    {
        var results = await run.CollectAsync(engine).ConfigureAwait(false);
        ThrowIfFailed(context, results);
        // Usage counts every generated candidate: best_of's dropped ones were computed too.
        var usage = UsageOf(plan, results.Select(r => r.Finished));
        if (plan.BestOf > plan.N) results = SamplingFields.SelectBest(results, plan.N);
        var choices = results.Select(r => new CompletionChoice(r.Index, plan.EchoPrompts?[r.PromptIndex] + r.Text,
            plan.Logprobs ? CompletionLogprobsOf(engine, r.Tokens, 0, r.Prompt) : null, GenerationRun.FinishReasonText(r.Finished!.Reason))
        {
            TokenIds = plan.ReturnTokenIds ? r.Tokens.Select(t => t.TokenId).ToArray() : null,
        }).ToArray();
        var response = new CompletionResponse(id, "text_completion", created, plan.Model, choices, usage)
        {
            PromptTokenIds = !plan.ReturnTokenIds ? null : plan.Prompts.Count == 1 ? plan.Prompts[0] : plan.Prompts,
        };
        ReportMeanLogprob(context, results);
        await context.Response.WriteAsJsonAsync(response, ServerJson.Options, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Sets the <see cref="MeanLogprob.Header"/> of a JSON answer from the first choice's tokens.</summary>
    private static void ReportMeanLogprob(HttpContext context, IReadOnlyList<ChoiceResult> results)
    {
        var mean = new LogprobMean();
        foreach (var token in results[0].Tokens) mean.Add(token.Logprob);
        if (mean.Value is { } value) context.Response.Headers[MeanLogprob.Header] = MeanLogprob.Format(value);
    }

    /// <summary>
    /// OpenAI's legacy logprobs of <paramref name="tokens"/>, led by the prompt's tokens when it was
    /// scored (echo): the first prompt token has neither a log-probability nor alternatives (null).
    /// </summary>
    private static CompletionLogprobs CompletionLogprobsOf(InferenceEngine engine, IReadOnlyList<TokenOut> tokens, int offset, PromptScored? prompt = null)
    {
        var entries = new List<(string Text, float? Logprob, IReadOnlyDictionary<string, float>? Top)>();
        for (int i = 0; i < (prompt?.TokenIds.Count ?? 0); i++)
            entries.Add((engine.TokenText(prompt!.TokenIds[i]), prompt.Logprobs[i], prompt.TopLogprobs[i] is { } top ? TopDictionary(engine, top) : null));
        foreach (var t in tokens) entries.Add((t.Text, t.Logprob, TopDictionary(engine, t.Top ?? [])));
        var offsets = new List<int>();
        foreach (var e in entries)
        {
            offsets.Add(offset);
            offset += e.Text.Length;
        }
        return new CompletionLogprobs(
            entries.Select(e => e.Text).ToArray(),
            entries.Select(e => e.Logprob is float l ? GenerationRun.Finite(l) : (float?)null).ToArray(),
            entries.Select(e => e.Top).ToArray(),
            offsets);
    }

    private static Dictionary<string, float> TopDictionary(InferenceEngine engine, IReadOnlyList<(int TokenId, float Logprob)> alternatives)
    {
        var top = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var (tokenId, logprob) in alternatives) top.TryAdd(engine.TokenText(tokenId), GenerationRun.Finite(logprob));
        return top;
    }

    private static ChatLogprobs ChatLogprobsOf(InferenceEngine engine, IEnumerable<TokenOut> tokens) => new(tokens.Select(t =>
        new ChatTokenLogprob(t.Text, GenerationRun.Finite(t.Logprob), Bytes(t.Text),
            (t.Top ?? []).Select(a => { string text = engine.TokenText(a.TokenId); return new ChatTopLogprob(text, GenerationRun.Finite(a.Logprob), Bytes(text)); }).ToArray())).ToArray());

    private static int[] Bytes(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();

    private static async Task AnswerChatAsync(HttpContext context, InferenceEngine engine, GenerationPlan plan, GenerationRun run, string id, long created)
    {
        var results = await run.CollectAsync(engine).ConfigureAwait(false);
        ThrowIfFailed(context, results);
        var output = new ChatToolOutput(plan.Tools, results.Count);
        var choices = results.Select(r =>
        {
            var (message, finish) = output.Answer(r.Text.ToString(), r.Finished!.Reason);
            return new ChatChoice(r.Index, message, plan.Logprobs ? ChatLogprobsOf(engine, r.Tokens) : null, finish)
            {
                TokenIds = plan.ReturnTokenIds ? r.Tokens.Select(t => t.TokenId).ToArray() : null,
            };
        }).ToArray();
        var response = new ChatCompletionResponse(id, "chat.completion", created, plan.Model, choices, UsageOf(plan, results.Select(r => r.Finished)))
        {
            PromptTokenIds = plan.ReturnTokenIds ? plan.Prompts[0] : null,
        };
        ReportMeanLogprob(context, results);
        await context.Response.WriteAsJsonAsync(response, ServerJson.Options, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>
    /// Streams a run: waits for the first event so that a request that fails at once still gets a
    /// proper error status, then sends events as they come, one chunk per released piece of text.
    /// The last chunk (the usage chunk, or else the one finishing the last choice) carries the mean
    /// log-probability of the first choice's tokens: <paramref name="chunkFor"/> and
    /// <paramref name="usageChunk"/> get it for that chunk only, null otherwise.
    /// </summary>
    private static async Task StreamAsync(HttpContext context, GenerationRun run, GenerationPlan plan,
        Func<int, GenerationEvent, double?, object?> chunkFor, Func<object?> opening, Func<Usage, double?, object> usageChunk)
    {
        var finished = new GenerationFinished?[run.Count];
        int running = run.Count;
        var mean = new LogprobMean();
        var events = run.EventsAsync().GetAsyncEnumerator();
        try
        {
            bool any = await events.MoveNextAsync().ConfigureAwait(false);
            if (any && events.Current.Event is GenerationFinished { Reason: FinishReason.Error } early && run.Count == 1)
                throw new ApiException(StatusCodes.Status500InternalServerError, early.Error ?? "The engine failed.", ApiErrorTypes.Server);
            if (any && events.Current.Event is GenerationFinished { Reason: FinishReason.Abort } && context.RequestAborted.IsCancellationRequested) return;

            var response = context.Response;
            var token = context.RequestAborted;
            await Sse.StartAsync(response).ConfigureAwait(false);
            if (opening() is { } open) await Sse.WriteAsync(response, open, ServerJson.Options, token).ConfigureAwait(false);
            while (any)
            {
                var (choice, e) = events.Current;
                if (e is TokenGenerated generated && choice == 0) mean.Add(generated.Logprob);
                if (e is GenerationFinished f)
                {
                    finished[choice] = f;
                    running--;
                    if (f.Reason is FinishReason.Error or FinishReason.Abort)
                    {
                        if (token.IsCancellationRequested) return;
                        var error = f.Reason == FinishReason.Error
                            ? new ApiException(StatusCodes.Status500InternalServerError, f.Error ?? "The engine failed.", ApiErrorTypes.Server)
                            : new ApiException(StatusCodes.Status503ServiceUnavailable, f.Error ?? "The request was aborted.", ApiErrorTypes.Unavailable);
                        await Sse.WriteAsync(response, ApiErrors.Body(error), ServerJson.Options, token).ConfigureAwait(false);
                        await Sse.WriteDoneAsync(response, token).ConfigureAwait(false);
                        return;
                    }
                }
                bool last = e is GenerationFinished && running == 0 && !plan.IncludeUsage;
                if (chunkFor(choice, e, last ? mean.Value : null) is { } chunk) await Sse.WriteAsync(response, chunk, ServerJson.Options, token).ConfigureAwait(false);
                any = await events.MoveNextAsync().ConfigureAwait(false);
            }
            if (plan.IncludeUsage) await Sse.WriteAsync(response, usageChunk(UsageOf(plan, finished), mean.Value), ServerJson.Options, token).ConfigureAwait(false);
            await Sse.WriteDoneAsync(response, token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
        {
            // The client went away mid-stream; the run is cancelled by the caller.
        }
        finally
        {
            run.Cancel();
            await events.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static Task StreamCompletionAsync(HttpContext context, InferenceEngine engine, GenerationPlan plan, GenerationRun run, string id, long created)
    {
        var offsets = new int[run.Count];
        var started = new bool[run.Count];
        var echoed = new bool[run.Count];
        CompletionChunk Chunk(CompletionChoice choice) => new(id, "text_completion", created, plan.Model, [choice]);
        // echo: the prompt's text leads the first chunk of each choice.
        string Echo(int choice, string text)
        {
            if (plan.EchoPrompts is null || echoed[choice]) return text;
            echoed[choice] = true;
            return plan.EchoPrompts[run.PromptIndexOf(choice)] + text;
        }
        IReadOnlyList<int>? PromptIds(int choice)
        {
            if (!plan.ReturnTokenIds || started[choice]) return null;
            started[choice] = true;
            return plan.Prompts[run.PromptIndexOf(choice)];
        }

        return StreamAsync(context, run, plan, (choice, e, meanLogprob) =>
        {
            switch (e)
            {
                case TokenGenerated t:
                    if (t.Text.Length == 0 && !plan.Logprobs && !plan.ReturnTokenIds) return null;
                    var token = new TokenOut(t.TokenId, engine.TokenText(t.TokenId), t.Logprob, t.TopLogprobs);
                    var logprobs = plan.Logprobs ? CompletionLogprobsOf(engine, [token], offsets[choice]) : null;
                    offsets[choice] += token.Text.Length;
                    return Chunk(new CompletionChoice(choice, Echo(choice, t.Text), logprobs, null)
                    {
                        TokenIds = plan.ReturnTokenIds ? [t.TokenId] : null,
                        PromptTokenIds = PromptIds(choice),
                    });
                case PromptScored prompt:
                    // echo with logprobs: the prompt's text and scores in a chunk of their own, before the first token.
                    var scored = CompletionLogprobsOf(engine, [], offsets[choice], prompt);
                    offsets[choice] = scored.TextOffset.Count == 0 ? offsets[choice] : scored.TextOffset[^1] + scored.Tokens[^1].Length;
                    return Chunk(new CompletionChoice(choice, Echo(choice, ""), scored, null));
                case GenerationFinished f:
                    return Chunk(new CompletionChoice(choice, Echo(choice, f.TrailingText), null, GenerationRun.FinishReasonText(f.Reason))
                    {
                        TokenIds = plan.ReturnTokenIds ? [] : null,
                        PromptTokenIds = PromptIds(choice),
                    }) with { MeanLogprob = meanLogprob };
                default:
                    return null;
            }
        }, () => null, (usage, meanLogprob) => new CompletionChunk(id, "text_completion", created, plan.Model, []) { Usage = usage, MeanLogprob = meanLogprob });
    }

    private static Task StreamChatAsync(HttpContext context, InferenceEngine engine, GenerationPlan plan, GenerationRun run, string id, long created)
    {
        ChatCompletionChunk Chunk(ChatChunkChoice choice) => new(id, "chat.completion.chunk", created, plan.Model, [choice]);
        var output = new ChatToolOutput(plan.Tools, run.Count);
        bool first = true;
        return StreamAsync(context, run, plan, (choice, e, meanLogprob) =>
        {
            switch (e)
            {
                case TokenGenerated t:
                    var delta = output.Delta(choice, t.Text);
                    if (delta is null && !plan.Logprobs && !plan.ReturnTokenIds) return null;
                    var token = new TokenOut(t.TokenId, engine.TokenText(t.TokenId), t.Logprob, t.TopLogprobs);
                    return Chunk(new ChatChunkChoice(choice, delta ?? new ChatDelta { Content = "" }, plan.Logprobs ? ChatLogprobsOf(engine, [token]) : null, null)
                    {
                        TokenIds = plan.ReturnTokenIds ? [t.TokenId] : null,
                    });
                case GenerationFinished f:
                    return Chunk(new ChatChunkChoice(choice, output.Delta(choice, f.TrailingText, final: true) ?? new ChatDelta(), null,
                        output.FinishReason(choice, f.Reason))) with { MeanLogprob = meanLogprob };
                default:
                    return null;
            }
        }, () =>
        {
            // OpenAI opens each choice with the assistant role and empty content.
            if (!first) return null;
            first = false;
            var choices = Enumerable.Range(0, run.Count).Select(i => new ChatChunkChoice(i, new ChatDelta { Role = "assistant", Content = "" }, null, null)).ToArray();
            return new ChatCompletionChunk(id, "chat.completion.chunk", created, plan.Model, choices) { PromptTokenIds = plan.ReturnTokenIds ? plan.Prompts[0] : null };
        }, (usage, meanLogprob) => new ChatCompletionChunk(id, "chat.completion.chunk", created, plan.Model, []) { Usage = usage, MeanLogprob = meanLogprob });
    }
}
