using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TuneGateway.Server.Auth;
using TuneGateway.Server.Common;
using TuneGateway.Server.Worker;
using Yarp.ReverseProxy;

namespace TuneGateway.Server.Gateway;

/// <summary>The gateway's own endpoints: worker registration, the model list, adapter management across workers, aliases.</summary>
public static class GatewayEndpoints
{
    public static void MapGatewayApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/internal/workers", (WorkerState state, WorkerRegistry registry) =>
        {
            if (string.IsNullOrWhiteSpace(state.WorkerId)) throw ApiException.Invalid("worker_id", "'worker_id' is required.");
            try
            {
                registry.Report(state);
            }
            catch (ArgumentException ex)
            {
                throw ApiException.Invalid("url", ex.Message.Split(" (Parameter")[0]);
            }
            return Results.NoContent();
        }).RequireAuthorization(Policies.Operator);
        app.MapDelete("/internal/workers/{id}", (string id, WorkerRegistry registry) =>
            registry.Remove(id) ? Results.NoContent()
            : throw new ApiException(404, $"No registered worker has the id or URL '{id}'.", ApiErrorTypes.NotFound, "id", "worker_not_found")).RequireAuthorization(Policies.Operator);
        app.MapGet("/admin/workers", Workers).RequireAuthorization(Policies.Operator);

        app.MapGet("/v1/models", Models).RequireAuthorization(Policies.Inference);
        app.MapPost("/v1/load_lora_adapter", (HttpContext context, WorkerRegistry registry, GatewayOptions options, IHttpClientFactory clients) =>
            BroadcastAsync(context, registry, options, clients, "/v1/load_lora_adapter", onlyHolders: false)).RequireAuthorization(Policies.Admin);
        app.MapPost("/v1/unload_lora_adapter", (HttpContext context, WorkerRegistry registry, GatewayOptions options, IHttpClientFactory clients) =>
            BroadcastAsync(context, registry, options, clients, "/v1/unload_lora_adapter", onlyHolders: true)).RequireAuthorization(Policies.Admin);

        var admin = app.MapGroup("/admin/aliases").RequireAuthorization(Policies.Aliases);
        admin.MapGet("/", async (IAliasStore store, CancellationToken ct) => Results.Json(new { data = await store.ListAsync(ct) }, ServerJson.Options));
        admin.MapGet("/{name}", async (string name, IAliasStore store, CancellationToken ct) =>
            await store.GetAsync(name, ct) is { } alias ? Results.Json(alias, ServerJson.Options)
            : throw new ApiException(404, $"The alias '{name}' does not exist.", ApiErrorTypes.NotFound, "name", "alias_not_found"));
        admin.MapPut("/{name}", PutAliasAsync);
        admin.MapDelete("/{name}", async (string name, HttpContext context, IAliasStore store, CancellationToken ct) =>
            await store.DeleteAsync(name, AuditActor.Of(context), ct) ? Results.NoContent()
            : throw new ApiException(404, $"The alias '{name}' does not exist.", ApiErrorTypes.NotFound, "name", "alias_not_found"));

        app.MapGet("/readyz", (WorkerRegistry registry) => registry.All.Any(w => w.State?.Ready == true)
            ? Results.Json(new { status = "ready", workers = registry.All.Count(w => w.State?.Ready == true) })
            : Results.Json(new { status = "no ready worker" }, statusCode: StatusCodes.Status503ServiceUnavailable));
    }

    /// <summary>The alias body: <c>{"versions": [{"model", "weight"}], "base_model"?}</c>.</summary>
    private sealed record AliasBody(IReadOnlyList<AliasVersion>? Versions, string? BaseModel);

    private static async Task<IResult> PutAliasAsync(string name, HttpContext context, IAliasStore store, CancellationToken ct)
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
        var config = new AliasConfig { Name = name, Versions = body?.Versions ?? [], BaseModel = body?.BaseModel };
        try
        {
            config.Validate();
            await store.SetAsync(config, AuditActor.Of(context), ct).ConfigureAwait(false);
        }
        catch (ArgumentException ex)
        {
            throw ApiException.Invalid(ex.ParamName ?? "versions", ex.Message.Split(" (Parameter")[0]);
        }
        return Results.Json(config, ServerJson.Options);
    }

    private static IResult Workers(WorkerRegistry registry, IProxyStateLookup proxy)
    {
        proxy.TryGetCluster(GatewayProxyConfig.ClusterId, out var cluster);
        return Results.Json(new
        {
            data = registry.All.Select(w =>
            {
                var destination = cluster?.Destinations.GetValueOrDefault(w.Url);
                return new
                {
                    url = w.Url,
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

    /// <summary>Base models and adapters the workers report, and the aliases, in vLLM's listing shape.</summary>
    private static IResult Models(WorkerRegistry registry, AliasResolver aliases)
    {
        var cards = new Dictionary<string, ModelCard>(StringComparer.Ordinal);
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        foreach (var state in registry.All.Select(w => w.State).Where(s => s is { Ready: true }))
        {
            cards.TryAdd(state!.BaseModel, new ModelCard(state.BaseModel, "model", now, "tunegw", state.BaseModel, null, state.MaxModelLen));
            foreach (string adapter in state.LoadedAdapters.Concat(state.ResidentAdapters))
                cards.TryAdd(adapter, new ModelCard(adapter, "model", now, "tunegw", adapter, state.BaseModel, state.MaxModelLen));
        }
        foreach (var alias in aliases.All)
            cards.TryAdd(alias.Name, new ModelCard(alias.Name, "model", alias.UpdatedAt.ToUnixTimeSeconds(), "tunegw", alias.Versions[0].Model, alias.BaseModel, null));
        return Results.Json(new ModelList("list", cards.Values.ToArray()), ServerJson.Options);
    }

    /// <summary>
    /// Sends an adapter load (every ready worker) or unload (the workers that have it) to the
    /// workers; answers the first failure, else the workers' success message.
    /// </summary>
    private static async Task<IResult> BroadcastAsync(HttpContext context, WorkerRegistry registry, GatewayOptions options, IHttpClientFactory clients,
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

        var workers = registry.All.Where(w => w.State is { Ready: true } s && (!onlyHolders || s.LoadedAdapters.Contains(name))).ToArray();
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
            string? authorization = options.WorkerKey is { } key ? "Bearer " + key : context.Request.Headers.Authorization.FirstOrDefault();
            if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);
            try
            {
                using var response = await client.SendAsync(request, context.RequestAborted).ConfigureAwait(false);
                return (Status: (int)response.StatusCode, Body: await response.Content.ReadAsStringAsync(context.RequestAborted).ConfigureAwait(false),
                    Type: response.Content.Headers.ContentType?.ToString());
            }
            catch (HttpRequestException ex)
            {
                return (Status: 502, Body: JsonSerializer.Serialize(ApiErrors.Body(new ApiException(502, $"Worker {worker.Url}: {ex.Message}", ApiErrorTypes.Server)), ServerJson.Options),
                    Type: (string?)"application/json");
            }
        })).ConfigureAwait(false);
        var failure = results.FirstOrDefault(r => r.Status >= 300);
        var answer = failure.Status != 0 ? failure : results[0];
        return Results.Content(answer.Body, answer.Type ?? "text/plain", Encoding.UTF8, answer.Status);
    }
}
