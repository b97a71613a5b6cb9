using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace TuneGateway.Cli.Operator;

/// <summary>Where and how the operator commands reach the server (from <c>--url</c>, <c>--api-key</c>, <c>--timeout</c>).</summary>
internal sealed record OperatorConnection(Uri BaseAddress, string? ApiKey, TimeSpan Timeout);

/// <summary>What a call to the operator API came to: the JSON answer, or the exit code and message of a failure.</summary>
internal sealed record OperatorResponse(CliExitCode Code, JsonElement? Body, string? Error)
{
    public bool Ok => Code == CliExitCode.Ok;
}

/// <summary>
/// One HTTP call to the operator API, with every failure mapped to a <see cref="CliExitCode"/> and a
/// message an operator can act on (the server's own error message when it sent one).
/// </summary>
internal static class OperatorClient
{
    public static async Task<OperatorResponse> SendAsync(OperatorConnection connection, HttpMethod method, string path, string? jsonBody, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = connection.BaseAddress, Timeout = connection.Timeout };
        using var request = new HttpRequestMessage(method, path);
        if (connection.ApiKey is { Length: > 0 } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (jsonBody is not null) request.Content = new StringContent(jsonBody, Encoding.UTF8, "application/json");
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            return new(CliExitCode.Unreachable, null, $"cannot reach {connection.BaseAddress}: {ex.Message} (set --url or TUNEGW_URL)");
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // HttpClient reports its own timeout as a cancellation; the caller did not cancel.
            return new(CliExitCode.Unreachable, null, $"{connection.BaseAddress} did not answer within {connection.Timeout.TotalSeconds:0.#} s (--timeout)");
        }
        using (response)
        {
            string text = await response.Content.ReadAsStringAsync(cancellationToken);
            JsonElement? body = TryParse(text);
            if (response.IsSuccessStatusCode)
            {
                if (text.Length > 0 && body is null)
                    return new(CliExitCode.ServerError, null, $"{connection.BaseAddress} answered {(int)response.StatusCode} with something that is not JSON; is --url the gateway?");
                return new(CliExitCode.Ok, body, null);
            }
            string message = ServerMessage(body) ?? (text.Length > 0 && text.Length <= 300 ? text.Trim() : response.ReasonPhrase ?? "no message");
            var code = response.StatusCode switch
            {
                HttpStatusCode.Unauthorized => CliExitCode.Auth,
                HttpStatusCode.Forbidden => CliExitCode.Auth,
                >= HttpStatusCode.InternalServerError => CliExitCode.ServerError,
                _ => CliExitCode.Refused,
            };
            string hint = code == CliExitCode.Auth ? (connection.ApiKey is null ? " (no key sent: set --api-key or TUNEGW_API_KEY)" : " (check --api-key / TUNEGW_API_KEY and its role)") : "";
            return new(code, body, $"{(int)response.StatusCode} {message}{hint}");
        }
    }

    private static JsonElement? TryParse(string text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The message of an OpenAI-shaped error, <c>{"error": {"message", "param"}}</c>.</summary>
    private static string? ServerMessage(JsonElement? body)
    {
        if (body is not { ValueKind: JsonValueKind.Object } b || !b.TryGetProperty("error", out var error) || error.ValueKind != JsonValueKind.Object) return null;
        string? message = error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
        string? param = error.TryGetProperty("param", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
        return message is null ? null : param is null ? message : $"{message} (param: {param})";
    }
}
