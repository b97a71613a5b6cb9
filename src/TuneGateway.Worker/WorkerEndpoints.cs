using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TuneGateway.Engine.Lora;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>The worker's HTTP API over its one engine.</summary>
public static class WorkerEndpoints
{
    /// <summary>
    /// Maps the OpenAI-compatible API, vLLM's adapter endpoints, the state endpoint and readiness
    /// under <paramref name="prefix"/> ("" for a standalone worker).
    /// </summary>
    public static void MapWorkerApi(this IEndpointRouteBuilder app, string prefix = "")
    {
        var api = app.MapGroup(prefix);
        api.MapPost("/v1/completions", CompletionEndpoints.CompletionsAsync).RequireAuthorization(Policies.Inference);
        api.MapPost("/v1/chat/completions", CompletionEndpoints.ChatCompletionsAsync).RequireAuthorization(Policies.Inference);
        api.MapPost("/tokenize", TokenizeEndpoints.TokenizeAsync).RequireAuthorization(Policies.Inference);
        api.MapPost("/detokenize", TokenizeEndpoints.DetokenizeAsync).RequireAuthorization(Policies.Inference);
        api.MapGet("/v1/models", (EngineHost host) => Results.Json(Models(host.Require()), ServerJson.Options)).RequireAuthorization(Policies.Inference);
        api.MapGet("/v1/models/{id}", (string id, EngineHost host) => Results.Json(
            Models(host.Require()).Data.FirstOrDefault(m => m.Id == id) ?? throw ApiException.ModelNotFound(id), ServerJson.Options)).RequireAuthorization(Policies.Inference);
        api.MapPost("/v1/load_lora_adapter", LoadAdapterAsync).RequireAuthorization(Policies.Admin);
        api.MapPost("/v1/unload_lora_adapter", UnloadAdapterAsync).RequireAuthorization(Policies.Admin);
        api.MapGet("/internal/state", (WorkerStatus status) => Results.Json(status.Snapshot(), ServerJson.Options)).RequireAuthorization(Policies.Operator);
        api.MapGet("/readyz", Readiness);
        // vLLM's name for the same question: is the engine up and serving?
        api.MapGet("/health", Readiness);
    }

    private static IResult Readiness(EngineHost host) => host.IsReady
        ? Results.Json(new { status = "ready", model = host.Engine!.ModelId })
        : Results.Json(new { status = host.LoadError is null ? "loading" : "failed" }, statusCode: StatusCodes.Status503ServiceUnavailable);

    /// <summary>
    /// The base model, each loaded adapter (with <c>parent</c> = base) as vLLM lists them, and the
    /// adapters the worker would load on demand from its adapter directories, each with its status.
    /// </summary>
    public static ModelList Models(Engine.Serving.InferenceEngine engine)
    {
        long started = engine.StartedAt.ToUnixTimeSeconds();
        var cards = new List<ModelCard>
        {
            new(engine.ModelId, "model", started, "tunegw", engine.Options.ModelDirectory, null, engine.MaxModelLength, ModelStatus.Base),
        };
        cards.AddRange(engine.Adapters.List().Select(a => new ModelCard(a.Name, "model", a.LoadedAt.ToUnixTimeSeconds(), "tunegw", a.Path, engine.ModelId,
            engine.MaxModelLength, a.Residency == AdapterResidency.Device ? ModelStatus.Resident : ModelStatus.Loaded)));
        cards.AddRange(engine.Adapters.Discover().Select(a =>
            new ModelCard(a.Name, "model", started, "tunegw", a.Path, engine.ModelId, engine.MaxModelLength, ModelStatus.Available)));
        return new ModelList("list", cards);
    }

    private static async Task<IResult> LoadAdapterAsync(HttpContext context, EngineHost host)
    {
        var engine = host.Require();
        using var document = await RequestFields.ReadBodyAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        var f = RequestFields.Parse(document);
        string name = f.RequiredString("lora_name");
        string path = f.RequiredString("lora_path");
        bool inPlace = f.Bool("load_inplace") ?? false;
        if (name == engine.ModelId) throw ApiException.Invalid("lora_name", $"'{name}' is the base model's id.");
        if (!inPlace && engine.Adapters.Find(name) is not null)
            throw ApiException.Invalid("lora_name", $"The lora adapter '{name}' has already been loaded. Pass \"load_inplace\": true to replace it.");
        try
        {
            await engine.Adapters.LoadAsync(name, path, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is AdapterLoadException or ArgumentException)
        {
            throw ApiException.Invalid(ex is ArgumentException ? "lora_name" : "lora_path", ex is ArgumentException arg ? arg.Message.Split(" (Parameter")[0] : ex.Message);
        }
        return Results.Text($"Success: LoRA adapter '{name}' added successfully.");
    }

    private static async Task<IResult> UnloadAdapterAsync(HttpContext context, EngineHost host)
    {
        var engine = host.Require();
        using var document = await RequestFields.ReadBodyAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
        var f = RequestFields.Parse(document);
        string name = f.RequiredString("lora_name");
        if (!engine.Adapters.Unload(name))
            throw new ApiException(StatusCodes.Status404NotFound, $"The lora adapter '{name}' cannot be found.", ApiErrorTypes.NotFound, "lora_name", "model_not_found");
        return Results.Text($"Success: LoRA adapter '{name}' removed successfully.");
    }

}
