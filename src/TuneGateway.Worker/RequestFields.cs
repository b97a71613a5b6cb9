using System.Text.Json;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>
/// Typed access to the fields of a JSON request body; a field of the wrong type or out of range is
/// an <see cref="ApiException"/> (400) naming it. Absent and null fields read as null.
/// With a set of declared fields, the reads are tracked: <see cref="RejectUnread"/> then refuses
/// any field the endpoint did not read, so that no parameter is silently ignored.
/// </summary>
internal readonly struct RequestFields
{
    private readonly IReadOnlySet<string>? _declared;
    private readonly HashSet<string>? _read;

    public RequestFields(JsonElement root, IReadOnlySet<string>? declared = null)
    {
        Root = root;
        _declared = declared;
        _read = declared is null ? null : new HashSet<string>(StringComparer.Ordinal);
    }

    public JsonElement Root { get; }

    /// <param name="declared">The fields the endpoint reads (null: untracked).</param>
    public static RequestFields Parse(JsonDocument document, IReadOnlySet<string>? declared = null) => document.RootElement.ValueKind == JsonValueKind.Object
        ? new RequestFields(document.RootElement, declared)
        : throw new ApiException(400, "The request body must be a JSON object.", ApiErrorTypes.InvalidRequest);

    private bool TryGet(string name, out JsonElement value)
    {
        if (_declared is not null)
        {
            // A programming error, not a client's: the declared list is what the accepted-parameters test checks.
            if (!_declared.Contains(name)) throw new InvalidOperationException($"The endpoint reads '{name}', which it does not declare.");
            _read!.Add(name);
        }
        return Root.TryGetProperty(name, out value);
    }

    public bool Has(string name) => TryGet(name, out var value) && value.ValueKind != JsonValueKind.Null;

    public JsonElement? Get(string name) => TryGet(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    /// <summary>
    /// 400 naming the first non-null field the endpoint did not read: with the reason from
    /// <paramref name="unsupported"/> when it is a known parameter this server does not implement,
    /// else as OpenAI words an unknown argument.
    /// </summary>
    public void RejectUnread(IReadOnlyDictionary<string, string> unsupported)
    {
        if (_read is null) return;
        foreach (var property in Root.EnumerateObject())
        {
            if (property.Value.ValueKind == JsonValueKind.Null || _read.Contains(property.Name)) continue;
            throw ApiException.Invalid(property.Name, unsupported.TryGetValue(property.Name, out string? why)
                ? $"'{property.Name}' is not supported by this server: {why}."
                : $"Unrecognized request argument supplied: {property.Name}", "unsupported_parameter");
        }
    }

    public string? String(string name)
    {
        if (Get(name) is not { } value) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw ApiException.Invalid(name, $"'{name}' must be a string.");
    }

    public string RequiredString(string name) =>
        String(name) is { Length: > 0 } s ? s : throw ApiException.Invalid(name, $"'{name}' is required.");

    public bool? Bool(string name)
    {
        if (Get(name) is not { } value) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.Invalid(name, $"'{name}' must be true or false."),
        };
    }

    public int? Int(string name, int min, int max)
    {
        if (Get(name) is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long n))
            throw ApiException.Invalid(name, $"'{name}' must be an integer.");
        if (n < min || n > max) throw ApiException.Invalid(name, $"'{name}' must be between {min} and {max}; got {n}.");
        return (int)n;
    }

    public long? Long(string name)
    {
        if (Get(name) is not { } value) return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out long n) ? n : throw ApiException.Invalid(name, $"'{name}' must be an integer.");
    }

    public double? Double(string name, double min, double max, bool minExclusive = false)
    {
        if (Get(name) is not { } value) return null;
        // Numbers beyond double's range (1e400) do not parse: as wrong as a string.
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d) || !double.IsFinite(d))
            throw ApiException.Invalid(name, $"'{name}' must be a number.");
        if (d > max || d < min || (minExclusive && d == min))
            throw ApiException.Invalid(name, $"'{name}' must be {(minExclusive ? "greater than" : "at least")} {min} and at most {max}; got {d}.");
        return d;
    }

    /// <summary>A string or an array of strings (as <c>stop</c> is given).</summary>
    public IReadOnlyList<string> Strings(string name)
    {
        if (Get(name) is not { } value) return [];
        if (value.ValueKind == JsonValueKind.String) return [value.GetString()!];
        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
            return value.EnumerateArray().Select(e => e.GetString()!).ToArray();
        throw ApiException.Invalid(name, $"'{name}' must be a string or an array of strings.");
    }

    public IReadOnlyList<int> Ints(string name)
    {
        if (Get(name) is not { } value) return [];
        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out _)))
            return value.EnumerateArray().Select(e => e.GetInt32()).ToArray();
        throw ApiException.Invalid(name, $"'{name}' must be an array of integers.");
    }

    /// <summary>400 when a field we do not implement is set to something other than its neutral value.</summary>
    public void RejectUnsupported(string name, Func<JsonElement, bool> isNeutral, string what)
    {
        if (Get(name) is { } value && !isNeutral(value)) throw ApiException.Invalid(name, $"'{name}' is not supported by this server: {what}.");
    }

    public static bool IsEmpty(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => !e.EnumerateObject().Any(),
        JsonValueKind.Array => e.GetArrayLength() == 0,
        JsonValueKind.String => e.GetString()!.Length == 0,
        _ => false,
    };

    /// <summary>Reads the request body as JSON (400 when it is not).</summary>
    public static async Task<JsonDocument> ReadBodyAsync(Microsoft.AspNetCore.Http.HttpRequest request, CancellationToken cancellationToken)
    {
        try
        {
            return await JsonDocument.ParseAsync(request.Body, default, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            throw new ApiException(400, $"The request body is not valid JSON: {ex.Message}", ApiErrorTypes.InvalidRequest);
        }
    }
}
