using System.Security.Claims;
using System.Text.Encodings.Web;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Gateway.Auth;

/// <summary>
/// Authenticates requests by API key (<c>Authorization: Bearer KEY</c>, as OpenAI clients send it,
/// or <c>X-Api-Key</c>). In open mode (no key configured) every request is a local admin.
/// In serve, the in-process worker's routes authenticate serve's <see cref="InternalHop"/> key and
/// nothing else; that key is valid nowhere else. Challenges and refusals are answered in OpenAI's error shape.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, ApiKeyStore keys,
    InternalHop? hop = null)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string ModelClaim = "tunegw:model";
    private const string FailureItem = "tunegw:auth-failure";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        // InternalHop.Guard has already turned away requests without the hop's key.
        if (hop is not null && hop.Covers(Request.Path))
            return Task.FromResult(hop.Accepts(Request) ? Success(InternalHop.Identity) : AuthenticateResult.Fail("Incorrect API key provided."));
        if (keys.IsOpen) return Task.FromResult(Success(new ApiKeyIdentity("local", Roles.All.ToHashSet(), [], null, null)));
        string? presented = PresentedKey(Request);
        if (presented is null) return Task.FromResult(AuthenticateResult.NoResult());
        var identity = keys.Find(presented);
        if (identity is null)
        {
            Context.Items[FailureItem] = true;
            return Task.FromResult(AuthenticateResult.Fail("Incorrect API key provided."));
        }
        return Task.FromResult(Success(identity));
    }

    private AuthenticateResult Success(ApiKeyIdentity identity)
    {
        var claims = new List<Claim> { new(ClaimTypes.Name, identity.Name) };
        claims.AddRange(identity.Roles.Select(r => new Claim(ClaimTypes.Role, r)));
        claims.AddRange(identity.Models.Select(m => new Claim(ModelClaim, m)));
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        Context.Features.Set(identity);
        return AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName));
    }

    internal static string? PresentedKey(HttpRequest request)
    {
        string? authorization = request.Headers.Authorization;
        if (authorization is not null && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return authorization["Bearer ".Length..].Trim();
        string? header = request.Headers["X-Api-Key"];
        return string.IsNullOrEmpty(header) ? null : header;
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        bool wrongKey = Context.Items.ContainsKey(FailureItem);
        return ApiErrors.WriteAsync(Context, new ApiException(StatusCodes.Status401Unauthorized,
            wrongKey ? "Incorrect API key provided." : "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
            ApiErrorTypes.Authentication, code: wrongKey ? "invalid_api_key" : "missing_api_key"));
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        ApiErrors.WriteAsync(Context, new ApiException(StatusCodes.Status403Forbidden,
            $"The API key '{Context.User.Identity?.Name}' does not have the role this endpoint requires.", ApiErrorTypes.Permission, code: "insufficient_permissions"));
}

/// <summary>Authorization policies of the endpoints, by the roles that pass them.</summary>
public static class Policies
{
    public const string Inference = "tunegw-inference";
    public const string Aliases = "tunegw-aliases";
    public const string Operator = "tunegw-operator";
    public const string Admin = "tunegw-admin";
    /// <summary>Worker registration and withdrawal: the worker role only (not operator, not admin).</summary>
    public const string WorkerRegistration = "tunegw-worker-registration";
}

/// <summary>Registration of API-key authentication, the role policies and per-key rate limits.</summary>
public static class AuthSetup
{
    public static IServiceCollection AddApiKeyAuth(this IServiceCollection services, ApiKeyStore keys)
    {
        services.AddSingleton(keys);
        services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        services.AddAuthorizationBuilder()
            .AddPolicy(Policies.Inference, p => p.RequireRole(Roles.Api))
            .AddPolicy(Policies.Aliases, p => p.RequireRole(Roles.Mlops, Roles.Operator, Roles.Admin))
            .AddPolicy(Policies.Operator, p => p.RequireRole(Roles.Operator, Roles.Admin))
            .AddPolicy(Policies.Admin, p => p.RequireRole(Roles.Admin))
            .AddPolicy(Policies.WorkerRegistration, p => p.RequireRole(Roles.Worker));
        services.AddRateLimiter(options =>
        {
            options.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(PartitionFor);
            options.OnRejected = async (context, cancellationToken) =>
            {
                TimeSpan retry = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? after : TimeSpan.FromSeconds(1);
                await ApiErrors.WriteAsync(context.HttpContext, new ApiException(StatusCodes.Status429TooManyRequests,
                    $"Rate limit reached for API key '{context.HttpContext.User.Identity?.Name}'. Retry after {Math.Max(1, (int)Math.Ceiling(retry.TotalSeconds))} s.",
                    ApiErrorTypes.RateLimit, code: "rate_limit_exceeded", retryAfter: retry)).ConfigureAwait(false);
            };
        });
        return services;
    }

    /// <summary>Inference calls of a key with a limit share one token bucket; everything else is unlimited.</summary>
    private static RateLimitPartition<string> PartitionFor(HttpContext context)
    {
        var identity = context.Features.Get<ApiKeyIdentity>();
        if (identity?.RequestsPerMinute is not int perMinute || !context.Request.Path.StartsWithSegments("/v1"))
            return RateLimitPartition.GetNoLimiter("unlimited");
        return RateLimitPartition.GetTokenBucketLimiter("key:" + identity.Name, _ =>
        {
            // Refill once a second when the rate allows, else one token per period; start full.
            var (period, tokens) = perMinute >= 60
                ? (TimeSpan.FromSeconds(1), (int)Math.Ceiling(perMinute / 60.0))
                : (TimeSpan.FromMinutes(1) / perMinute, 1);
            return new TokenBucketRateLimiterOptions
            {
                TokenLimit = Math.Max(1, identity.Burst ?? perMinute),
                TokensPerPeriod = tokens,
                ReplenishmentPeriod = period,
                QueueLimit = 0,
                AutoReplenishment = true,
            };
        });
    }

    /// <summary>Authentication, rate limiting and authorization, in that order.</summary>
    public static void UseApiKeyAuth(this WebApplication app)
    {
        app.UseAuthentication();
        app.UseRateLimiter();
        app.UseAuthorization();
    }

    /// <summary>403 unless the caller's key may use <paramref name="model"/> (keys limited to some models).</summary>
    public static void EnsureModelAllowed(HttpContext context, string model)
    {
        var identity = context.Features.Get<ApiKeyIdentity>();
        if (identity is null || identity.MayUse(model)) return;
        throw new ApiException(StatusCodes.Status403Forbidden,
            $"The API key '{identity.Name}' may not use the model '{model}'.", ApiErrorTypes.Permission, "model", "model_not_allowed");
    }

    /// <summary>Logs the open-mode warning, or how many keys are configured.</summary>
    public static void LogKeyMode(ApiKeyStore keys, ILogger logger, string role)
    {
        if (keys.IsOpen)
            logger.LogWarning("No API key configured: this {Role} accepts every request, with admin rights. For local use only; pass --api-key KEY or --api-keys FILE.", role);
        else
            logger.LogInformation("{Count} API key(s) configured", keys.Count);
    }
}

/// <summary>How the audit trail names the caller of a request.</summary>
public static class AuditActor
{
    /// <summary><c>key:NAME</c> for the API key that signed the request, <c>anonymous</c> in open mode.</summary>
    public static string Of(HttpContext http) => http.User.Identity?.Name is { Length: > 0 } name ? $"key:{name}" : "anonymous";
}
