using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Gateway.Common;

/// <summary>JSON settings of the HTTP APIs: snake_case names as OpenAI's API uses, nulls written.</summary>
public static class ServerJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        // Completion text is returned as generated: no HTML escaping of <, >, & or non-ASCII text.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The same, leaving null properties out (for optional extensions such as token_ids).</summary>
    public static JsonSerializerOptions OmitNulls { get; } = new(Options) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
}
