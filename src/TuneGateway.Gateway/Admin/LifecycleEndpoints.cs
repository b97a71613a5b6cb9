using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Gateway.Admin;

/// <summary>
/// The operator and MLOps API of the retraining loop: adapters, versions and lineage; promote and
/// roll back; pending approvals; pipelines (definition, pause, resume, run now); job history,
/// drift and the audit trail. Every state change names the calling key as the actor. What needs the
/// controller's or the engine's code (checking a pipeline definition, an adapter directory) goes
/// through the seams of <see cref="LifecycleSettings"/>, and answers 501 on a host without them.
/// </summary>
public static class LifecycleEndpoints
{
    private static readonly JsonSerializerOptions Json = LifecycleJson.Pipelines;

    public static void MapLifecycleApi(this IEndpointRouteBuilder app)
    {
        var read = app.MapGroup("/admin").RequireAuthorization(Policies.Aliases).AddEndpointFilter(ValidatePathNames);

        // data: the adapters the lifecycle registry knows; served: what the workers serve now, registered or not.
        read.MapGet("/adapters", async (LifecycleManager lifecycle, IServiceProvider services, CancellationToken ct) =>
        {
            var result = new List<object>();
            foreach (string adapter in await lifecycle.Registry.ListAdaptersAsync(ct))
                result.Add(await SummaryAsync(lifecycle, adapter, ct));
            return Results.Json(new { data = result, served = Served(services.GetService<WorkerRegistry>()) }, Json);
        });
        read.MapGet("/adapters/{name}", async (string name, LifecycleManager lifecycle, CancellationToken ct) =>
        {
            var versions = await lifecycle.Registry.ListVersionsAsync(name, ct);
            if (versions.Count == 0) throw NotFound($"The adapter '{name}' has no versions.", "name");
            return Results.Json(new
            {
                adapter = name,
                versions,
                alias = await lifecycle.Aliases.GetAsync(name, ct),
                canary = await lifecycle.CanaryAsync(name, ct),
                pipeline = await lifecycle.Pipelines.GetAsync(name, ct),
            }, Json);
        });
        read.MapGet("/adapters/{name}/versions/{version}", async (string name, string version, LifecycleManager lifecycle, CancellationToken ct) =>
            await lifecycle.Registry.GetAsync(name, version, ct) is { } v ? Results.Json(v, Json) : throw NotFound($"'{name}@{version}' does not exist.", "version"));
        read.MapGet("/adapters/{name}/drift", async (string name, LifecycleManager lifecycle, CancellationToken ct) =>
        {
            var history = await DriftHistoryAsync(lifecycle, name, ct);
            return Results.Json(new { adapter = name, current = history.Length > 0 ? history[^1] : (JsonElement?)null, history }, Json);
        });
        read.MapGet("/approvals", async (string? status, string? adapter, LifecycleManager lifecycle, CancellationToken ct) =>
        {
            ApprovalStatus? filter = status is null or "pending" ? ApprovalStatus.Pending
                : status == "all" ? null
                : Enum.TryParse<ApprovalStatus>(status, ignoreCase: true, out var s) ? s
                : throw ApiException.Invalid("status", "status must be pending, approved, rejected, expired or all.");
            return Results.Json(new { data = await lifecycle.Approvals.ListAsync(filter, adapter, ct) }, Json);
        });
        read.MapGet("/pipelines", async (LifecycleManager lifecycle, CancellationToken ct) =>
            Results.Json(new { data = await lifecycle.Pipelines.ListAsync(ct) }, Json));
        read.MapGet("/pipelines/{name}", async (string name, LifecycleManager lifecycle, IServiceProvider services, CancellationToken ct) =>
        {
            var record = await lifecycle.Pipelines.GetAsync(name, ct) ?? throw NotFound($"No pipeline for '{name}'.", "name");
            var scheduler = services.GetService<IPipelineSchedule>();
            return Results.Json(new { pipeline = record, next_run = scheduler is null ? null : await scheduler.NextRunAsync(name, ct) }, Json);
        });
        read.MapGet("/jobs", async (string? adapter, int? limit, IJobHistory history, CancellationToken ct) =>
            Results.Json(new { data = await history.ListAsync(adapter, Math.Clamp(limit ?? 100, 1, 1000), ct) }, Json));
        read.MapGet("/audit", async (string? adapter, long? after, int? limit, LifecycleManager lifecycle, CancellationToken ct) =>
            Results.Json(new { data = await lifecycle.Registry.GetAuditAsync(adapter, after ?? 0, Math.Clamp(limit ?? 100, 1, 1000), ct) }, Json));

        var operate = app.MapGroup("/admin").RequireAuthorization(Policies.Operator).AddEndpointFilter(ValidatePathNames);
        operate.MapPost("/adapters/{name}/promote", async (string name, ActionBody body, HttpContext http, LifecycleManager lifecycle, CancellationToken ct) =>
        {
            if (string.IsNullOrWhiteSpace(body.Version)) throw ApiException.Invalid("version", "'version' is required.");
            return await Guard(async () => Results.Json(await lifecycle.PromoteAsync(name, body.Version, AuditActor.Of(http), body.Reason ?? "promoted by an operator", ct), Json));
        });
        operate.MapPost("/adapters/{name}/rollback", async (string name, ActionBody body, HttpContext http, LifecycleManager lifecycle, CancellationToken ct) =>
            await Guard(async () => Results.Json(await lifecycle.RollbackAsync(name, body.Version, AuditActor.Of(http), body.Reason ?? "rolled back by an operator", ct), Json)));
        operate.MapPost("/approvals/{id}", async (string id, ApprovalBody body, HttpContext http, LifecycleManager lifecycle, CancellationToken ct) =>
        {
            if (body.Approve is not bool approve) throw ApiException.Invalid("approve", "'approve' (true or false) is required.");
            return await Guard(async () => Results.Json(await lifecycle.ResolveApprovalAsync(id, approve, AuditActor.Of(http), body.Comment, ct), Json));
        });

        var mlops = app.MapGroup("/admin").RequireAuthorization(Policies.Aliases).AddEndpointFilter(ValidatePathNames);
        mlops.MapPost("/adapters/{name}/versions", RegisterVersionAsync);
        mlops.MapPut("/pipelines/{name}", async (string name, HttpContext http, LifecycleManager lifecycle, LifecycleSettings settings, CancellationToken ct) =>
        {
            var definitions = settings.PipelineDefinitions
                ?? throw new ApiException(501, "This host cannot check pipeline definitions (it was composed without the retraining controller's rules), so it cannot store them.", ApiErrorTypes.InvalidRequest, null, "no_pipeline_rules");
            var definition = await ReadDefinitionAsync(http, name, definitions, ct);
            return Results.Json(await lifecycle.PutPipelineAsync(name, definition, AuditActor.Of(http), cancellationToken: ct), Json);
        });
        mlops.MapDelete("/pipelines/{name}", async (string name, HttpContext http, LifecycleManager lifecycle, CancellationToken ct) =>
        {
            if (!await lifecycle.DeletePipelineAsync(name, AuditActor.Of(http), ct)) throw NotFound($"No pipeline for '{name}'.", "name");
            return Results.NoContent();
        });
        mlops.MapPost("/pipelines/{name}/pause", (string name, HttpContext http, LifecycleManager lifecycle, CancellationToken ct) => PauseAsync(name, true, http, lifecycle, ct));
        mlops.MapPost("/pipelines/{name}/resume", (string name, HttpContext http, LifecycleManager lifecycle, CancellationToken ct) => PauseAsync(name, false, http, lifecycle, ct));
        mlops.MapPost("/pipelines/{name}/run", async (string name, HttpContext http, LifecycleManager lifecycle, IServiceProvider services, CancellationToken ct) =>
        {
            _ = await lifecycle.Pipelines.GetAsync(name, ct) ?? throw NotFound($"No pipeline for '{name}'.", "name");
            string actor = AuditActor.Of(http);
            await lifecycle.RequestRunAsync(name, actor, ct);
            if (services.GetService<IPipelineSchedule>() is { } scheduler) await scheduler.SyncAsync(ct);
            return Results.Accepted(value: new { status = "requested" });
        });
    }

    /// <summary>Each adapter a ready worker has loaded (resident or not), with its status and how many workers have it.</summary>
    private static object[] Served(WorkerRegistry? registry) => registry is null ? [] : registry.Routable
        .SelectMany(w => w.State!.LoadedAdapters.Select(a => (Adapter: a, w.State.BaseModel, Resident: w.State.ResidentAdapters.Contains(a))))
        .GroupBy(x => x.Adapter, StringComparer.Ordinal)
        .OrderBy(g => g.Key, StringComparer.Ordinal)
        .Select(g => (object)new
        {
            name = g.Key,
            base_model = g.First().BaseModel,
            status = g.Any(x => x.Resident) ? ModelStatus.Resident : ModelStatus.Loaded,
            workers = g.Count(),
        })
        .ToArray();

    /// <summary>
    /// Registers an adapter trained elsewhere: the PEFT directory at <c>path</c> (on this host's
    /// file system, e.g. the shared volume) is validated, published into the artifact store
    /// atomically with its checksum, and registered as a candidate; <c>promote: true</c> also makes
    /// it production at once (the first version of an adapter, typically).
    /// </summary>
    private static async Task<IResult> RegisterVersionAsync(string name, RegisterBody body, HttpContext http, LifecycleManager lifecycle, LifecycleSettings settings, IServiceProvider services, CancellationToken ct)
    {
        var artifacts = services.GetService<ArtifactStore>()
            ?? throw new ApiException(501, "This host has no artifact directory (--artifacts), so it cannot register versions.", ApiErrorTypes.InvalidRequest, null, "no_artifact_store");
        var format = settings.AdapterFormat
            ?? throw new ApiException(501, "This host cannot check adapter directories (it was composed without the engine's adapter format), so it cannot register versions.", ApiErrorTypes.InvalidRequest, null, "no_adapter_format");
        if (string.IsNullOrWhiteSpace(body.Path)) throw ApiException.Invalid("path", "'path' (a PEFT adapter directory on the server) is required.");
        if (!Directory.Exists(body.Path)) throw ApiException.Invalid("path", $"'{body.Path}' is not a directory on the server.");
        string baseModel = body.BaseModel ?? settings.BaseModel ?? "unknown";
        // Check the adapter before anything is written: a directory that is no PEFT adapter is refused whole.
        if (format.Problem(body.Path) is { } problem) throw ApiException.Invalid("path", problem);
        string actor = AuditActor.Of(http);
        string version = body.Version ?? await lifecycle.AllocateVersionAsync(name, ct);
        PublishedArtifact published;
        try
        {
            published = await artifacts.PublishAsync(body.Path, name, version, ct);
        }
        catch (ArgumentException ex)
        {
            throw ApiException.Invalid("version", ex.Message);
        }
        catch (IOException ex)
        {
            throw new ApiException(409, ex.Message, ApiErrorTypes.InvalidRequest, "version", "conflict");
        }
        var registered = await Guard(async () => Results.Json(await lifecycle.RegisterCandidateAsync(new RegisteredVersion
        {
            Adapter = name,
            Version = version,
            ArtifactPath = published.Path,
            Sha256 = published.Sha256,
            ParentVersion = body.Parent,
            DatasetId = body.DatasetId,
            BaseModel = baseModel,
        }, actor, body.Reason ?? "registered through the API", ct), Json));
        if (body.Promote == true)
            return await Guard(async () => Results.Json(await lifecycle.PromoteAsync(name, version, actor, body.Reason ?? "registered and promoted through the API", ct), Json));
        return registered;
    }

    private static async Task<IResult> PauseAsync(string name, bool paused, HttpContext http, LifecycleManager lifecycle, CancellationToken ct)
    {
        _ = await lifecycle.Pipelines.GetAsync(name, ct) ?? throw NotFound($"No pipeline for '{name}'.", "name");
        return Results.Json(await lifecycle.SetPipelinePausedAsync(name, paused, AuditActor.Of(http), ct), Json);
    }

    private static async Task<JsonElement> ReadDefinitionAsync(HttpContext http, string name, IPipelineDefinitions definitions, CancellationToken ct)
    {
        JsonElement body;
        try
        {
            body = await JsonSerializer.DeserializeAsync<JsonElement>(http.Request.Body, cancellationToken: ct);
        }
        catch (JsonException ex)
        {
            throw ApiException.Invalid("body", $"The body is not valid JSON: {ex.Message}");
        }
        if (body.ValueKind != JsonValueKind.Object) throw ApiException.Invalid("body", "The body must be a pipeline definition object.");
        var withName = JsonSerializer.SerializeToNode(body)!.AsObject();
        if (withName["adapter"] is { } given && given.GetValue<string>() != name) throw ApiException.Invalid("adapter", $"'adapter' must be '{name}' (the name in the path).");
        withName["adapter"] = name;
        try
        {
            return definitions.Normalize(JsonSerializer.SerializeToElement(withName));
        }
        catch (ArgumentException ex)
        {
            string field = ex.Message.Split(':')[0].Split(' ')[0];
            throw ApiException.Invalid(field, ex.Message);
        }
    }

    private static async Task<object> SummaryAsync(LifecycleManager lifecycle, string adapter, CancellationToken ct)
    {
        var versions = await lifecycle.Registry.ListVersionsAsync(adapter, ct);
        var canary = await lifecycle.CanaryAsync(adapter, ct);
        return new
        {
            adapter,
            production = versions.LastOrDefault(v => v.State == VersionState.Production)?.Version,
            canary = canary?.Candidate,
            versions = versions.Count,
            alias = await lifecycle.Aliases.GetAsync(adapter, ct),
        };
    }

    /// <summary>The drift checks the controller stored, oldest first, served as it wrote them (with <see cref="LifecycleJson.Pipelines"/>).</summary>
    private static async Task<JsonElement[]> DriftHistoryAsync(LifecycleManager lifecycle, string adapter, CancellationToken ct)
    {
        var stored = await lifecycle.Pipelines.GetStateAsync(adapter, LifecycleJson.DriftHistoryKey, ct);
        return stored is { ValueKind: JsonValueKind.Array } s ? [.. s.EnumerateArray()] : [];
    }

    /// <summary>
    /// The adapter name and version in the path are checked before any store sees them: the stores
    /// refuse bad ones (control characters, '..', '/') with an ArgumentException, which would be a 500.
    /// </summary>
    private static ValueTask<object?> ValidatePathNames(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        foreach (var (key, what) in new[] { ("name", "adapter name"), ("version", "version") })
        {
            if (context.HttpContext.Request.RouteValues.TryGetValue(key, out var value) && value is string text)
            {
                try
                {
                    LifecycleRules.ValidateName(text, what);
                }
                catch (ArgumentException ex)
                {
                    throw ApiException.Invalid(key, ex.Message.Split(" (Parameter")[0]);
                }
            }
        }
        return next(context);
    }

    /// <summary>Runs a lifecycle action, mapping its failures to API errors.</summary>
    private static async Task<IResult> Guard(Func<Task<IResult>> action)
    {
        try
        {
            return await action();
        }
        catch (KeyNotFoundException ex)
        {
            throw NotFound(ex.Message, "version");
        }
        catch (StateConflictException ex)
        {
            throw new ApiException(409, ex.Message, ApiErrorTypes.InvalidRequest, null, "conflict");
        }
        catch (ArgumentException ex)
        {
            // The stores validate what the body names (a version, a reason) the same way.
            throw ApiException.Invalid(ex.ParamName ?? "version", ex.Message.Split(" (Parameter")[0]);
        }
        catch (InvalidOperationException ex)
        {
            throw new ApiException(409, ex.Message, ApiErrorTypes.InvalidRequest, null, "conflict");
        }
    }

    private static ApiException NotFound(string message, string param) => new(404, message, ApiErrorTypes.NotFound, param, "not_found");

    public sealed record ActionBody(string? Version, string? Reason);

    public sealed record ApprovalBody(bool? Approve, string? Comment);

    public sealed record RegisterBody(string? Path, string? Version, string? Parent, string? DatasetId, string? BaseModel, string? Reason, bool? Promote);
}
