using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using TuneGateway.Storage.Lifecycle;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Model;

namespace TuneGateway.Gateway.Proxy;

/// <summary>The gateway's own endpoints: worker registration, the model list, adapter management across workers, aliases.</summary>
public static class GatewayEndpoints
{
    public static void MapGatewayApi(this IEndpointRouteBuilder app)
    {
        // Registration is the worker role's alone: a worker that registers receives traffic (and, when
        // it proved the worker credential, the gateway's worker key). See docs/OPERATIONS.md, "Trust model".
        app.MapPost("/internal/workers", RegisterWorker).RequireAuthorization(Policies.WorkerRegistration);
        app.MapDelete("/internal/workers/{id}", (string id, WorkerRegistry registry) => registry.Remove(id)
            ? Results.NoContent()
            : throw new ApiException(404, $"No registered worker has the id or URL '{id}'.", ApiErrorTypes.NotFound, "id", "worker_not_found"))
            .RequireAuthorization(Policies.WorkerRegistration);
        app.MapGet("/admin/workers", Workers).RequireAuthorization(Policies.Operator);

        app.MapGet("/v1/models", (WorkerRegistry registry, AliasResolver aliases) => Results.Json(Models(registry, aliases), ServerJson.Options))
            .RequireAuthorization(Policies.Inference);
        app.MapGet("/v1/models/{id}", (string id, WorkerRegistry registry, AliasResolver aliases) => Results.Json(
            Models(registry, aliases).Data.FirstOrDefault(m => m.Id == id) ?? throw ApiException.ModelNotFound(id), ServerJson.Options)).RequireAuthorization(Policies.Inference);
        app.MapPost("/v1/load_lora_adapter", (HttpContext context, WorkerRegistry registry, WorkerCredentials credentials, IHttpClientFactory clients) =>
            BroadcastAsync(context, registry, credentials, clients, "/v1/load_lora_adapter", onlyHolders: false)).RequireAuthorization(Policies.Admin);
        app.MapPost("/v1/unload_lora_adapter", (HttpContext context, WorkerRegistry registry, WorkerCredentials credentials, IHttpClientFactory clients) =>
            BroadcastAsync(context, registry, credentials, clients, "/v1/unload_lora_adapter", onlyHolders: true)).RequireAuthorization(Policies.Admin);

        var admin = app.MapGroup("/admin/aliases").RequireAuthorization(Policies.Aliases);
        admin.MapGet("/", async (IAliasReader aliases, CancellationToken ct) =>
            Results.Json(new { data = (await aliases.ListAsync(ct)).Select(AliasView.Of) }, ServerJson.Options));
        admin.MapGet("/{name}", async (string name, IAliasReader aliases, CancellationToken ct) =>
            await aliases.GetAsync(name, ct) is { } alias ? Results.Json(AliasView.Of(alias), ServerJson.Options) : throw AliasNotFound(name));
        admin.MapPut("/{name}", PutAliasAsync);
        admin.MapDelete("/{name}", async (string name, HttpContext context, IAliasEditor editor, AliasResolver resolver, CancellationToken ct) =>
        {
            if (!await editor.DeleteAliasAsync(name, AuditActor.Of(context), ct)) throw AliasNotFound(name);
            resolver.Remove(name);
            return Results.NoContent();
        });

        app.MapGet("/readyz", Readiness);
        // vLLM's name for the same question: can this endpoint serve a request now?
        app.MapGet("/health", Readiness);
    }

    private static IResult Readiness(WorkerRegistry registry) => registry.Routable.Count > 0
        ? Results.Json(new { status = "ready", workers = registry.Routable.Count })
        : Results.Json(new { status = "no ready worker" }, statusCode: StatusCodes.Status503ServiceUnavailable);

    /// <summary>
    /// A worker's state report. In open mode nobody proves anything, so such a worker gets no
    /// credential; with keys, the caller holds the worker role (the policy saw to it).
    /// </summary>
    private static IResult RegisterWorker(WorkerState state, WorkerRegistry registry, WorkerAllowList allowList, ApiKeyStore keys)
    {
        if (string.IsNullOrWhiteSpace(state.WorkerId)) throw ApiException.Invalid("worker_id", "'worker_id' is required.");
        string url = WorkerRegistry.TryNormalize(state.Url ?? "") ?? throw ApiException.Invalid("url", $"'{state.Url}' is not an http(s) URL.");
        if (!allowList.Allows(url))
            throw new ApiException(StatusCodes.Status403Forbidden, $"Workers may not register at '{url}': it is not on the gateway's worker allow-list.",
                ApiErrorTypes.Permission, "url", "worker_url_not_allowed");
        try
        {
            registry.Report(state, keys.IsOpen ? WorkerTrust.Unverified : WorkerTrust.Registered);
        }
        catch (WorkerRegistrationException ex)
        {
            throw new ApiException(StatusCodes.Status403Forbidden, ex.Message, ApiErrorTypes.Permission, "url", "worker_url_taken");
        }
        return Results.NoContent();
    }

    private static ApiException AliasNotFound(string name) =>
        new(404, $"The alias '{name}' does not exist.", ApiErrorTypes.NotFound, "name", "alias_not_found");

    /// <summary>One version of an alias on the wire: <c>{"model", "weight"}</c> (weights relative when set, summing to 1 as stored).</summary>
    private sealed record AliasVersion(string Model, double Weight);

    /// <summary>An alias on the wire of /admin/aliases: <c>{"name", "versions", "base_model", "updated_at"}</c>, the lifecycle's route in the API's words.</summary>
    private sealed record AliasView(string Name, IReadOnlyList<AliasVersion> Versions, string? BaseModel, DateTimeOffset UpdatedAt)
    {
        public static AliasView Of(AliasRoute route) => new(route.Alias, [.. route.Arms.Select(a => new AliasVersion(a.Model, a.Weight))], route.BaseModel, route.UpdatedAt);
    }

    /// <summary>The alias body: <c>{"versions": [{"model", "weight"}], "base_model"?}</c>.</summary>
    private sealed record AliasBody(IReadOnlyList<AliasVersion>? Versions, string? BaseModel)
    {
        /// <summary>The arms it sets (each named after its model), or <see cref="ArgumentException"/> naming the field when it cannot route.</summary>
        public IReadOnlyList<AliasArm> Arms(string name)
        {
            if (string.IsNullOrWhiteSpace(name) || name.Contains('@', StringComparison.Ordinal) || name.Contains('/', StringComparison.Ordinal))
                throw new ArgumentException($"'{name}' is not a valid alias name (no '@' or '/').", "name");
            var versions = Versions ?? [];
            if (versions.Count == 0) throw new ArgumentException("An alias needs at least one version.", "versions");
            foreach (var v in versions)
            {
                if (string.IsNullOrWhiteSpace(v.Model)) throw new ArgumentException("Every version needs a model.", "versions");
                if (v.Model == name) throw new ArgumentException($"The alias '{name}' cannot point to itself.", "versions");
                if (!double.IsFinite(v.Weight) || v.Weight < 0) throw new ArgumentException($"The weight of '{v.Model}' must be a finite number >= 0.", "versions");
            }
            if (versions.Sum(v => v.Weight) <= 0) throw new ArgumentException("At least one weight must be positive.", "versions");
            if (versions.Select(v => v.Model).Distinct(StringComparer.Ordinal).Count() != versions.Count)
                throw new ArgumentException("A version appears twice.", "versions");
            return [.. versions.Select(v => new AliasArm(v.Model, v.Weight, v.Model))];
        }
    }

    private static async Task<IResult> PutAliasAsync(string name, HttpContext context, IAliasEditor editor, AliasResolver resolver, CancellationToken ct)
    {
        AliasBody? body;
        try
        {
            // Read whatever the content type says, like the OpenAI routes (ReadFromJsonAsync throws on a non-JSON one: a 500).
            body = await JsonSerializer.DeserializeAsync<AliasBody>(context.Request.Body, ServerJson.Options, ct).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            throw ApiException.Invalid("versions", $"Expected {{\"versions\": [{{\"model\": ..., \"weight\": ...}}]}}: {ex.Message}");
        }
        AliasRoute route;
        try
        {
            body ??= new AliasBody(null, null);
            route = await editor.SetAliasAsync(name, body.Arms(name), body.BaseModel, AuditActor.Of(context), ct).ConfigureAwait(false);
        }
        catch (ArgumentException ex)
        {
            throw ApiException.Invalid(ex.ParamName ?? "versions", ex.Message.Split(" (Parameter")[0]);
        }
        // This gateway routes on it from the next request; other replicas by the store's watch.
        resolver.Apply(route);
        return Results.Json(AliasView.Of(route), ServerJson.Options);
    }

    /// <summary>
    /// The pool as the gateway sees it: <c>ready</c> and <c>status</c> are the gateway's verdict (a worker
    /// killed without withdrawing is silent or unreachable, not ready); <c>state</c> is what it last reported.
    /// </summary>
    private static IResult Workers(WorkerRegistry registry, IProxyStateLookup proxy)
    {
        proxy.TryGetCluster(GatewayProxyConfig.ClusterId, out var cluster);
        return Results.Json(new
        {
            data = registry.All.Select(w =>
            {
                var destination = cluster?.Destinations.GetValueOrDefault(w.Url);
                var availability = registry.Availability(w);
                if (availability == WorkerAvailability.Ready && destination?.Health.Active == DestinationHealth.Unhealthy) availability = WorkerAvailability.Unreachable;
                return new
                {
                    url = w.Url,
                    ready = availability == WorkerAvailability.Ready,
                    status = JsonNamingPolicy.SnakeCaseLower.ConvertName(availability.ToString()),
                    trust = JsonNamingPolicy.SnakeCaseLower.ConvertName(w.Trust.ToString()),
                    configured = w.IsStatic,
                    last_seen = w.LastSeen == default ? (DateTimeOffset?)null : w.LastSeen,
                    active_health = destination?.Health.Active.ToString(),
                    passive_health = destination?.Health.Passive.ToString(),
                    outstanding = destination?.ConcurrentRequestCount ?? 0,
                    state = w.State,
                };
            }),
        }, ServerJson.Options);
    }

    /// <summary>
    /// Base models and adapters the ready workers report (resident on one, loaded, or available to
    /// load on demand), and the aliases, in vLLM's listing shape with a status each.
    /// </summary>
    private static ModelList Models(WorkerRegistry registry, AliasResolver aliases)
    {
        var cards = new Dictionary<string, ModelCard>(StringComparer.Ordinal);
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var states = registry.Routable.Select(w => w.State!).ToArray();
        // The strongest status any worker has for an adapter wins: resident, then loaded, then available.
        foreach (var (status, pick) in new (string, Func<WorkerState, IEnumerable<string>>)[]
                 {
                     (ModelStatus.Resident, s => s.ResidentAdapters), (ModelStatus.Loaded, s => s.LoadedAdapters), (ModelStatus.Available, s => s.AvailableAdapters),
                 })
        {
            foreach (var state in states)
            {
                cards.TryAdd(state.BaseModel, new ModelCard(state.BaseModel, "model", now, "tunegw", state.BaseModel, null, state.MaxModelLen, ModelStatus.Base));
                foreach (string adapter in pick(state))
                    cards.TryAdd(adapter, new ModelCard(adapter, "model", now, "tunegw", adapter, state.BaseModel, state.MaxModelLen, status));
            }
        }
        foreach (var alias in aliases.All)
            cards.TryAdd(alias.Alias, new ModelCard(alias.Alias, "model", alias.UpdatedAt.ToUnixTimeSeconds(), "tunegw", alias.Arms[0].Model, alias.BaseModel, null, ModelStatus.Alias));
        return new ModelList("list", cards.Values.ToArray());
    }

    /// <summary>
    /// Sends an adapter load (every ready worker) or unload (the workers that have it) to the
    /// workers; answers the first failure, else the workers' success message.
    /// </summary>
    private static async Task<IResult> BroadcastAsync(HttpContext context, WorkerRegistry registry, WorkerCredentials credentials, IHttpClientFactory clients,
        string path, bool onlyHolders)
    {
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted).ConfigureAwait(false);
        byte[] body = buffer.ToArray();
        string? name = null;
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("lora_name", out var n) && n.ValueKind == JsonValueKind.String)
                name = n.GetString();
        }
        catch (JsonException ex)
        {
            throw new ApiException(400, $"The request body is not valid JSON: {ex.Message}", ApiErrorTypes.InvalidRequest);
        }
        if (string.IsNullOrEmpty(name)) throw ApiException.Invalid("lora_name", "'lora_name' is required.");

        var workers = registry.Routable.Where(w => !onlyHolders || w.State!.LoadedAdapters.Contains(name)).ToArray();
        if (workers.Length == 0)
        {
            throw onlyHolders
                ? new ApiException(404, $"The lora adapter '{name}' cannot be found.", ApiErrorTypes.NotFound, "lora_name", "model_not_found")
                : new ApiException(503, "No ready worker to load the adapter on.", ApiErrorTypes.Unavailable, code: "no_worker_available");
        }
        var client = clients.CreateClient(GatewayProxyConfig.HttpClientName);
        var results = await Task.WhenAll(workers.Select(async worker =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, worker.Url + path) { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            credentials.Apply(request.Headers, worker, context.Request.Headers.Authorization.FirstOrDefault(), context.Request.Headers["X-Api-Key"].FirstOrDefault());
            try
            {
                using var response = await client.SendAsync(request, context.RequestAborted).ConfigureAwait(false);
                return (Status: (int)response.StatusCode, Body: await response.Content.ReadAsStringAsync(context.RequestAborted).ConfigureAwait(false),
                    Type: response.Content.Headers.ContentType?.ToString());
            }
            catch (HttpRequestException ex)
            {
                return (Status: 502, Body: JsonSerializer.Serialize(ApiErrors.Body(new ApiException(502, $"A worker could not be reached: {ex.Message}", ApiErrorTypes.Server)), ServerJson.Options),
                    Type: (string?)"application/json");
            }
        })).ConfigureAwait(false);
        var failure = results.FirstOrDefault(r => r.Status >= 300);
        var answer = failure.Status != 0 ? failure : results[0];
        return Results.Content(answer.Body, answer.Type ?? "text/plain", Encoding.UTF8, answer.Status);
    }
}
