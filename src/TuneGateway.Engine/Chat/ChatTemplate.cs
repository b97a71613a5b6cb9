using System.Text.Json;
using TuneGateway.Engine.Chat.Jinja;

namespace TuneGateway.Engine.Chat;

/// <summary>
/// A model's chat template: the Jinja template in <c>tokenizer_config.json</c> (<c>chat_template</c>) or
/// <c>chat_template.jinja</c> that turns a list of messages into the prompt text, rendered the way Hugging Face
/// transformers' <c>apply_chat_template</c> renders it (jinja2's sandboxed environment with <c>trim_blocks</c> and
/// <c>lstrip_blocks</c>, the <c>tojson</c> filter without HTML escaping, <c>raise_exception</c> and
/// <c>strftime_now</c>). Parsing happens once, up front: a template that uses an unsupported construct is rejected
/// by <see cref="Parse"/> with a <see cref="ChatTemplateException"/> naming the construct and its position. An
/// instance is immutable and safe to use from several threads.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The file Hugging Face stores a chat template in, besides tokenizer_config.json (which it overrides).</summary>
    public const string TemplateFileName = "chat_template.jinja";

    private const string TokenizerConfigFileName = "tokenizer_config.json";

    private readonly IReadOnlyList<Stmt> _body;

    private ChatTemplate(string source, IReadOnlyList<Stmt> body, TimeProvider timeProvider)
    {
        Source = source;
        _body = body;
        TimeProvider = timeProvider;
    }

    /// <summary>The template text.</summary>
    public string Source { get; }

    /// <summary>The clock behind <c>strftime_now()</c> (local time, as Hugging Face's <c>datetime.now()</c>).</summary>
    public TimeProvider TimeProvider { get; }

    /// <summary>Parses a template; throws <see cref="ChatTemplateException"/> if it is invalid or unsupported.</summary>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(source, Parser.ParseTemplate(source), TimeProvider.System);
    }

    /// <summary>Reads and parses a template file (e.g. the file given with <c>--chat-template</c>).</summary>
    public static ChatTemplate FromFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string source;
        try
        {
            source = File.ReadAllText(path);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            throw new ChatTemplateException($"Cannot read the chat template file '{path}': {error.Message}", error);
        }

        return Parse(source);
    }

    /// <summary>
    /// The chat template of a Hugging Face model directory, or null if it has none. As transformers does,
    /// <c>chat_template.jinja</c> takes precedence over the <c>chat_template</c> entry of
    /// <c>tokenizer_config.json</c>; that entry is a string, or a list of <c>{name, template}</c> of which the one
    /// named "default" is used.
    /// </summary>
    public static ChatTemplate? FromModelDirectory(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        var templateFile = Path.Combine(modelDirectory, TemplateFileName);
        if (File.Exists(templateFile))
        {
            return FromFile(templateFile);
        }

        var configFile = Path.Combine(modelDirectory, TokenizerConfigFileName);
        if (!File.Exists(configFile))
        {
            return null;
        }

        var source = ReadTemplateFromTokenizerConfig(configFile);
        return source is null ? null : Parse(source);
    }

    private static string? ReadTemplateFromTokenizerConfig(string configFile)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(configFile));
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException or JsonException)
        {
            throw new ChatTemplateException($"Cannot read '{configFile}': {error.Message}", error);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("chat_template", out var template))
            {
                return null;
            }

            switch (template.ValueKind)
            {
                case JsonValueKind.Null:
                    return null;
                case JsonValueKind.String:
                    return template.GetString();
                case JsonValueKind.Array:
                    foreach (var entry in template.EnumerateArray())
                    {
                        if (entry.ValueKind == JsonValueKind.Object
                            && entry.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String
                            && name.GetString() == "default"
                            && entry.TryGetProperty("template", out var text) && text.ValueKind == JsonValueKind.String)
                        {
                            return text.GetString();
                        }
                    }

                    var names = template.EnumerateArray()
                        .Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("name", out _))
                        .Select(e => e.GetProperty("name").ToString());
                    throw new ChatTemplateException(ChatTemplateErrorKind.Load,
                        $"'{configFile}' has named chat templates ({string.Join(", ", names)}) but none named 'default'");
                default:
                    throw new ChatTemplateException(ChatTemplateErrorKind.Load,
                        $"'chat_template' in '{configFile}' must be a string or a list of {{name, template}}");
            }
        }
    }

    /// <summary>The same template with <c>strftime_now()</c> reading <paramref name="timeProvider"/>.</summary>
    public ChatTemplate WithTimeProvider(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        return new ChatTemplate(Source, _body, timeProvider);
    }

    /// <summary>
    /// Renders a conversation. The template sees <c>messages</c>, <c>add_generation_prompt</c>, <c>bos_token</c>
    /// and <c>eos_token</c> (each only when given, as Hugging Face passes only the special tokens a tokenizer
    /// has), <c>tools</c> and <c>documents</c> (none unless given in <paramref name="extraVariables"/>), and any
    /// other entry of <paramref name="extraVariables"/> (e.g. <c>tools</c> as JSON-like data,
    /// <c>date_string</c>, <c>enable_thinking</c>), which may be plain .NET values, dictionaries, lists or
    /// <see cref="JsonElement"/>s.
    /// </summary>
    /// <exception cref="ChatTemplateException">
    /// The template raised an error (<see cref="ChatTemplateErrorKind.Raised"/>, e.g. roles that do not alternate)
    /// or failed while rendering (<see cref="ChatTemplateErrorKind.Render"/>).
    /// </exception>
    public string Render(
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt,
        string? bosToken = null,
        string? eosToken = null,
        IReadOnlyDictionary<string, object?>? extraVariables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = messages.Select(m => (object?)m.ToTemplateValue()).ToList(),
            ["tools"] = null,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (bosToken is not null)
        {
            variables["bos_token"] = bosToken;
        }

        if (eosToken is not null)
        {
            variables["eos_token"] = eosToken;
        }

        if (extraVariables is not null)
        {
            foreach (var (name, value) in extraVariables)
            {
                variables[name] = ValueConverter.ToTemplateValue(value);
            }
        }

        return Renderer.Render(_body, variables, TimeProvider);
    }

    /// <summary>
    /// Renders with exactly these variables (converted like <paramref name="variables"/> values of
    /// <see cref="Render(IReadOnlyList{ChatMessage}, bool, string?, string?, IReadOnlyDictionary{string, object?}?)"/>),
    /// for callers whose messages do not fit <see cref="ChatMessage"/> (e.g. content given as a list of parts).
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var converted = variables.ToDictionary(e => e.Key, e => ValueConverter.ToTemplateValue(e.Value), StringComparer.Ordinal);
        return Renderer.Render(_body, converted, TimeProvider);
    }
}
