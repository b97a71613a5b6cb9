using System.Text.Json;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Serving;
using TuneGateway.Engine.Structured;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>
/// <c>response_format</c> (text, json_object, json_schema) as a grammar, its compilation (a schema
/// keyword the decoder cannot enforce is a 400 naming it), and the sampling options a constrained
/// output cannot be combined with.
/// </summary>
internal static class StructuredRequests
{
    /// <summary>json_object asks for a JSON object (OpenAI's JSON mode), any object.</summary>
    private static readonly JsonElement s_anyObject = JsonSerializer.SerializeToElement(new { type = "object" });

    /// <summary>The grammar <c>response_format</c> asks for; null for text (or no response_format).</summary>
    public static GrammarPart? ResponseFormat(RequestFields f)
    {
        if (f.Get("response_format") is not { } format) return null;
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw ApiException.Invalid("response_format", "'response_format' must be an object with a 'type'.");
        switch (type.GetString())
        {
            case "text":
                return null;
            case "json_object":
                return new GrammarPart.Json(s_anyObject);
            case "json_schema":
                if (!format.TryGetProperty("json_schema", out var spec) || spec.ValueKind != JsonValueKind.Object)
                    throw ApiException.Invalid("response_format", "'response_format.json_schema' is required with type json_schema.");
                if (!spec.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0)
                    throw ApiException.Invalid("response_format", "'response_format.json_schema.name' is required.");
                if (spec.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                    throw ApiException.Invalid("response_format", "'response_format.json_schema.strict' must be true or false.");
                // Without a schema any JSON value will do; strict or not, the output is held to the schema.
                var schema = spec.TryGetProperty("schema", out var given) && given.ValueKind != JsonValueKind.Null ? given.Clone() : JsonSerializer.SerializeToElement(true);
                return new GrammarPart.Json(schema);
            default:
                throw ApiException.Invalid("response_format", $"Invalid 'response_format.type' '{type.GetString()}': expected 'text', 'json_object' or 'json_schema'.", "invalid_value");
        }
    }

    /// <summary>Compiles against the engine's vocabulary; an unsupported keyword is a 400 on <paramref name="param"/>.</summary>
    public static CompiledGrammar Compile(InferenceEngine engine, GrammarPart part, string param)
    {
        try
        {
            return engine.Structured.Compile(part);
        }
        catch (SchemaNotSupportedException ex)
        {
            throw ApiException.Invalid(param, ex.Message, "unsupported_schema");
        }
    }

    /// <summary>
    /// A stop string or stop token could cut a constrained output short and still report
    /// finish_reason stop, and min_tokens or ignore_eos would hold it open past its end: refused, so
    /// that a stopped constrained output is always complete.
    /// </summary>
    public static void RejectConflicts(SamplingParams sampling, string constraint)
    {
        string? conflict = sampling.Stop.Count > 0 ? "stop" : sampling.StopTokenIds.Count > 0 ? "stop_token_ids"
            : sampling.IgnoreEos ? "ignore_eos" : sampling.MinTokens > 0 ? "min_tokens" : null;
        if (conflict is not null) throw ApiException.Invalid(conflict, $"'{conflict}' cannot be combined with {constraint}.");
    }
}
