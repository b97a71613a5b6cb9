using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TuneGateway.Gateway.Common;

/// <summary>
/// An error answered in OpenAI's shape, <c>{"error": {"message", "type", "param", "code"}}</c>.
/// Throw it from an endpoint; <see cref="ApiErrors"/> turns it into the response.
/// </summary>
public sealed class ApiException : Exception
{
    public ApiException(int status, string message, string type, string? param = null, string? code = null, TimeSpan? retryAfter = null)
        : base(message)
    {
        Status = status;
        Type = type;
        Param = param;
        Code = code;
        RetryAfter = retryAfter;
    }

    public int Status { get; }
    public string Type { get; }
    public string? Param { get; }
    public string? Code { get; }
    /// <summary>Sent as the Retry-After header (whole seconds, at least 1).</summary>
    public TimeSpan? RetryAfter { get; }

    /// <summary>400: a field of the request is missing or invalid; <paramref name="param"/> names it.</summary>
    public static ApiException Invalid(string param, string message, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, ApiErrorTypes.InvalidRequest, param, code);

    /// <summary>404 for a path nothing is mapped at (or that this caller may not know exists).</summary>
    public static ApiException NoRoute(HttpRequest request) =>
        new(StatusCodes.Status404NotFound, $"No route for {request.Method} {request.Path}.", ApiErrorTypes.NotFound, code: "not_found");

    public static ApiException ModelNotFound(string model) =>
        new(StatusCodes.Status404NotFound, $"The model '{model}' does not exist.", ApiErrorTypes.NotFound, "model", "model_not_found");
}

/// <summary>The <c>type</c> values OpenAI (and vLLM) use.</summary>
public static class ApiErrorTypes
{
    public const string InvalidRequest = "invalid_request_error";
    public const string NotFound = "NotFoundError";
    public const string Authentication = "authentication_error";
    public const string Permission = "permission_error";
    public const string RateLimit = "rate_limit_exceeded";
    public const string Server = "server_error";
    public const string Unavailable = "service_unavailable";
}

/// <summary>The body of an error response.</summary>
public sealed record ApiErrorBody([property: JsonPropertyName("error")] ApiErrorDetail Error);

/// <summary>OpenAI's error object; <c>param</c> and <c>code</c> are present (null) even when unknown.</summary>
public sealed record ApiErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code);

/// <summary>Writes errors in OpenAI's shape.</summary>
public static class ApiErrors
{
    public static ApiErrorBody Body(ApiException error) => new(new ApiErrorDetail(error.Message, error.Type, error.Param, error.Code));

    /// <summary>Writes <paramref name="error"/> as the response, unless the response has already started.</summary>
    public static async Task WriteAsync(HttpContext context, ApiException error)
    {
        if (context.Response.HasStarted) return;
        context.Response.Clear();
        context.Response.StatusCode = error.Status;
        if (error.RetryAfter is { } retry)
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retry.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await context.Response.WriteAsJsonAsync(Body(error), ServerJson.Options, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>
    /// Middleware that answers <see cref="ApiException"/>s (and bad JSON) in OpenAI's shape and
    /// unexpected exceptions as a 500 of the same shape.
    /// </summary>
    public static async Task Middleware(HttpContext context, Func<Task> next)
    {
        try
        {
            await next().ConfigureAwait(false);
        }
        catch (ApiException error)
        {
            await WriteAsync(context, error).ConfigureAwait(false);
        }
        catch (BadHttpRequestException error)
        {
            await WriteAsync(context, new ApiException(error.StatusCode, error.Message, ApiErrorTypes.InvalidRequest)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nobody is left to answer.
        }
        catch (Exception error) when (!context.Response.HasStarted)
        {
            // A bug, but the client still gets an answer it can parse (Kestrel's own is an empty 500); the details stay in the log.
            context.RequestServices.GetService<ILoggerFactory>()?.CreateLogger(typeof(ApiErrors)).LogError(error,
                "Unhandled exception on {Method} {Path}", context.Request.Method, context.Request.Path);
            await WriteAsync(context, new ApiException(StatusCodes.Status500InternalServerError, "The server failed to answer this request.", ApiErrorTypes.Server,
                code: "internal_error")).ConfigureAwait(false);
        }
    }
}
