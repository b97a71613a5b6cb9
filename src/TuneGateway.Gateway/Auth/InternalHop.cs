using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Gateway.Auth;

/// <summary>
/// serve's hop from its gateway to its in-process worker, on the same port: the worker's routes
/// live under <see cref="Prefix"/> and answer only requests that carry <see cref="Key"/>, a random
/// secret that never leaves the process. To everyone else those routes do not exist (404), so a
/// client cannot go around the gateway's rate limits and traffic log, and the key is valid nowhere
/// else, so a worker that received it could not use it on the public API.
/// </summary>
public sealed class InternalHop
{
    private readonly byte[] _keyHash;

    public InternalHop(string prefix)
    {
        Prefix = prefix;
        Key = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        _keyHash = SHA256.HashData(Encoding.UTF8.GetBytes(Key));
    }

    public string Prefix { get; }
    /// <summary>The secret; it leaves this process never (it goes over loopback, to this process).</summary>
    public string Key { get; }

    /// <summary>Who the worker's endpoints see: the gateway, with every right the hop may need.</summary>
    public static readonly ApiKeyIdentity Identity = new("internal", new HashSet<string>(Roles.Api, StringComparer.Ordinal), [], null, null);

    public bool Covers(PathString path) => path.StartsWithSegments(Prefix, StringComparison.OrdinalIgnoreCase);

    private bool IsReadiness(HttpRequest request) => HttpMethods.IsGet(request.Method)
        && request.Path.Equals(Prefix + "/readyz", StringComparison.OrdinalIgnoreCase);

    /// <summary>Compares in constant time, so the key cannot be guessed byte by byte from timings.</summary>
    public bool Accepts(HttpRequest request) => ApiKeyAuthenticationHandler.PresentedKey(request) is { } presented
        && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), _keyHash);

    /// <summary>
    /// Answers 404 for the hop's routes without its key, before authentication, rate limits or
    /// anything else runs. Readiness stays open: YARP's active health checks probe it without the
    /// request transforms that add the key, and it tells no more than the public <c>/readyz</c>.
    /// </summary>
    public Task Guard(HttpContext context, Func<Task> next) => Covers(context.Request.Path) && !IsReadiness(context.Request) && !Accepts(context.Request)
        ? ApiErrors.WriteAsync(context, ApiException.NoRoute(context.Request))
        : next();
}
