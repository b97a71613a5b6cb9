using System.Text.Json;
using System.Text.Unicode;
using Microsoft.AspNetCore.Http;

namespace TuneGateway.Gateway.Common;

/// <summary>
/// Refuses request bodies whose JSON strings are not valid text, before any route reads them.
/// System.Text.Json parses such bodies without complaint (the reader checks structure, not the
/// bytes inside strings) and throws <see cref="InvalidOperationException"/> only later, when a
/// string is read, which every route would otherwise have to catch.
/// </summary>
public static class JsonText
{
    /// <summary>
    /// 400 in OpenAI's shape when a string or property name of <paramref name="json"/> is not valid
    /// UTF-8 or escapes a lone surrogate, or when an object has the same key twice: readers
    /// disagree on which one counts (the gateway's JsonNode throws, JsonElement takes one of them),
    /// and the gateway checks the key's models on the same body the worker serves. Structural
    /// errors are left to the route, which names what it expected.
    /// </summary>
    public static void Validate(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = MaxDepth });
        // The keys seen in each open object (null for arrays), innermost last.
        var keys = new Stack<HashSet<string>?>();
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject: keys.Push(new HashSet<string>(StringComparer.Ordinal)); continue;
                    case JsonTokenType.StartArray: keys.Push(null); continue;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray: keys.Pop(); continue;
                    case JsonTokenType.String or JsonTokenType.PropertyName: break;
                    default: continue;
                }
                string text;
                if (!reader.ValueIsEscaped && !Utf8.IsValid(reader.ValueSpan)) throw Invalid($"the string at byte {reader.TokenStartIndex} is not valid UTF-8");
                try
                {
                    text = reader.GetString()!;
                }
                catch (InvalidOperationException)
                {
                    throw Invalid($"the string at byte {reader.TokenStartIndex} is not valid UTF-8 or escapes a lone surrogate");
                }
                if (reader.TokenType == JsonTokenType.PropertyName && keys.Peek() is { } seen && !seen.Add(text))
                    throw new ApiException(StatusCodes.Status400BadRequest, $"The request body has the key '{text}' twice in one object.", ApiErrorTypes.InvalidRequest,
                        keys.Count == 1 ? text : null, "duplicate_key");
            }
        }
        catch (JsonException)
        {
            // Not JSON at all: the route answers that, in its own words.
        }
    }

    /// <summary>Deeper than any route's bodies; deeper documents are left to the route's parser (whose limit is 64).</summary>
    private const int MaxDepth = 256;

    private static ApiException Invalid(string what) =>
        new(StatusCodes.Status400BadRequest, $"The request body is not valid JSON text: {what}.", ApiErrorTypes.InvalidRequest, code: "invalid_text");

    /// <summary>
    /// Middleware: buffers the body of a POST, PUT or PATCH (every route of these hosts that takes
    /// a body takes JSON) and validates it; the route then reads the buffer. Runs after
    /// authorization, so that only callers with a valid key get their bodies buffered.
    /// </summary>
    public static async Task Middleware(HttpContext context, Func<Task> next)
    {
        var request = context.Request;
        bool hasBody = request.ContentLength is > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0);
        if (hasBody && (HttpMethods.IsPost(request.Method) || HttpMethods.IsPut(request.Method) || HttpMethods.IsPatch(request.Method)))
        {
            var buffer = new MemoryStream();
            context.Response.RegisterForDispose(buffer);
            await request.Body.CopyToAsync(buffer, context.RequestAborted).ConfigureAwait(false);
            Validate(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
            buffer.Position = 0;
            request.Body = buffer;
            request.ContentLength = buffer.Length;
        }
        await next().ConfigureAwait(false);
    }
}
