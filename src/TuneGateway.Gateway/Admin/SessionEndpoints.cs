using System.Security.Claims;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Gateway.Admin;

/// <summary>
/// <c>GET /admin/whoami</c>: the calling key's name and roles, for the dashboard's sign-in (it checks
/// the key and shows or hides the actions the key may take). Open to the roles that may read the
/// lifecycle API (mlops, operator, admin); other keys get 403.
/// </summary>
public static class SessionEndpoints
{
    public static IEndpointConventionBuilder MapSessionApi(this IEndpointRouteBuilder app) =>
        app.MapGet("/admin/whoami", (HttpContext http) =>
        {
            var roles = http.User.FindAll(ClaimTypes.Role).Select(c => c.Value).Order(StringComparer.Ordinal).ToArray();
            return Results.Json(new { name = http.User.Identity?.Name, roles }, ServerJson.Options);
        }).RequireAuthorization(Policies.Aliases);
}
