using System.Collections.Frozen;
using System.Reflection;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TuneGateway.Gateway.Admin;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Gateway.Dashboard;

/// <summary>
/// The operator dashboard: static HTML, CSS and JavaScript modules embedded in this assembly and
/// served under <c>/dashboard/</c> to anyone (they hold no data); the pages read and act through
/// the role-protected <c>/admin</c> API with the key the operator pastes in. Every dashboard
/// response carries a strict Content-Security-Policy: scripts, styles and requests from this
/// origin only, no inline code, no framing.
/// </summary>
public static class DashboardEndpoints
{
    public const string Path = "/dashboard";

    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private const string ResourcePrefix = "dashboard/";

    private static readonly Lazy<FrozenDictionary<string, Asset>> Assets = new(LoadAssets);

    /// <summary>Maps the dashboard's files and the <c>/admin/whoami</c> endpoint its sign-in uses.</summary>
    public static void MapDashboard(this IEndpointRouteBuilder app)
    {
        app.MapMethods(Path + "/{**file}", [HttpMethods.Get, HttpMethods.Head], (string? file, HttpContext http) => Serve(file, http));
        app.MapSessionApi();
    }

    private static IResult Serve(string? file, HttpContext http)
    {
        SetSecurityHeaders(http.Response);
        // Relative links in the page resolve against the directory: serve the page at "/dashboard/" only.
        if (string.IsNullOrEmpty(file) && !http.Request.Path.Value!.EndsWith('/'))
            return Results.Redirect(http.Request.PathBase + Path + "/" + http.Request.QueryString);
        string name = string.IsNullOrEmpty(file) ? "index.html" : file;
        if (!Assets.Value.TryGetValue(name, out var asset))
            throw new ApiException(StatusCodes.Status404NotFound, $"The dashboard has no file '{name}'.", ApiErrorTypes.NotFound, code: "not_found");

        var headers = http.Response.Headers;
        headers.ETag = asset.ETag;
        // Revalidate every time: the files change with the server, and a 304 costs nothing.
        headers.CacheControl = "no-cache";
        if (http.Request.Headers.IfNoneMatch.Contains(asset.ETag)) return Results.StatusCode(StatusCodes.Status304NotModified);
        return Results.Bytes(asset.Content, asset.ContentType);
    }

    private static void SetSecurityHeaders(HttpResponse response)
    {
        var headers = response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        headers["Cross-Origin-Opener-Policy"] = "same-origin";
    }

    private static FrozenDictionary<string, Asset> LoadAssets()
    {
        var assembly = typeof(DashboardEndpoints).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (string resource in assembly.GetManifestResourceNames())
        {
            string normalized = resource.Replace('\\', '/');
            if (!normalized.StartsWith(ResourcePrefix, StringComparison.Ordinal)) continue;
            assets[normalized[ResourcePrefix.Length..]] = Read(assembly, resource);
        }
        if (!assets.ContainsKey("index.html")) throw new InvalidOperationException("The dashboard's files are not embedded in the server assembly.");
        return assets.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private static Asset Read(Assembly assembly, string resource)
    {
        using var stream = assembly.GetManifestResourceStream(resource) ?? throw new InvalidOperationException($"Missing resource {resource}.");
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        byte[] content = buffer.ToArray();
        string etag = $"\"{Convert.ToHexStringLower(SHA256.HashData(content))[..16]}\"";
        return new Asset(content, ContentTypeOf(resource), etag);
    }

    private static string ContentTypeOf(string name) => System.IO.Path.GetExtension(name) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".json" => "application/json; charset=utf-8",
        ".ico" => "image/x-icon",
        _ => "application/octet-stream",
    };

    private sealed record Asset(byte[] Content, string ContentType, string ETag);
}
