using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using TuneGateway.Gateway.Admin;
using TuneGateway.Gateway.Auth;
using TuneGateway.Gateway.Common;
using TuneGateway.Gateway.Dashboard;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Storage;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Storage.Lifecycle.Embedded;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Transforms;

namespace TuneGateway.Gateway;

/// <summary>What every role's web host shares: where it listens, its keys, telemetry and logging.</summary>
public sealed record HostSettings
{
    /// <summary>Addresses to listen on (Kestrel URLs; port 0 picks a free port).</summary>
    public IReadOnlyList<string> Urls { get; init; } = ["http://127.0.0.1:8000"];
    /// <summary>API keys (besides those under <c>TuneGateway:ApiKeys</c> in configuration). None: open mode.</summary>
    public IReadOnlyList<ApiKeyEntry> ApiKeys { get; init; } = [];
    public string? OtlpEndpoint { get; init; }
    public Action<ILoggingBuilder>? ConfigureLogging { get; init; }
    /// <summary>Runs last on the host's services: extra registrations (stores, test exporters).</summary>
    public Action<IServiceCollection>? ConfigureServices { get; init; }
}

/// <summary>
/// Builds the gateway's web host (YARP in front of workers, with its operator API, dashboard and
/// traffic log), and holds the parts every role's web host is made of: the builder (keys, JSON,
/// telemetry, logging), the common middleware and routes, the fallback. The worker's host
/// (<c>WorkerHost</c> in TuneGateway.Worker) and serve's (<c>ServeHost</c> in TuneGateway.Cli,
/// a gateway with an in-process worker and optionally the retraining controller) are built from them.
/// </summary>
public static class GatewayHost
{
    /// <summary>This build's version (with its git commit when built from a clone), as <c>GET /version</c> answers it.</summary>
    public static string Version { get; } =
        typeof(GatewayHost).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>The serving worker's URL, on client responses only with <see cref="GatewayOptions.ExposeWorkerHeader"/>.</summary>
    public const string WorkerHeader = WireHeaders.Worker;

    /// <param name="traffic">The traffic log (null: none); see <see cref="TrafficLogSettings"/>.</param>
    /// <param name="lifecycle">The adapter lifecycle (registry, shared aliases, operator API; null: none); see <see cref="LifecycleSettings"/>.</param>
    public static WebApplication Create(GatewayOptions gateway, HostSettings settings, InMemoryAliasStore? aliases = null, IRequestObserver? observer = null,
        TrafficLogSettings? traffic = null, LifecycleSettings? lifecycle = null)
    {
        var builder = CreateBuilder(settings, "tunegw-gateway", out var keys);
        var configured = builder.Configuration.GetSection("TuneGateway:Workers").Get<string[]>() ?? [];
        gateway = gateway with { Workers = [.. gateway.Workers, .. configured] };
        var parts = AddGateway(builder, gateway, keys, aliases, observer, traffic, lifecycle);
        var app = builder.Build();
        UseCommon(app, keys, "gateway");
        MapGateway(app, parts);
        return app;
    }

    /// <summary>What <see cref="AddGateway"/> set up, for <see cref="MapGateway"/>.</summary>
    public sealed record GatewayParts(TrafficLogSettings? Traffic, string? TrafficStore, LifecycleSettings? Lifecycle, string? LifecycleStore);

    /// <summary>
    /// The gateway's services: the traffic log, the adapter lifecycle, the worker registry, aliases
    /// and the reverse proxy.
    /// </summary>
    /// <param name="withLifecycle">Registrations that need the lifecycle's stores (serve's in-process controller), made right after them, before the gateway's own: hosted services start in this order.</param>
    public static GatewayParts AddGateway(WebApplicationBuilder builder, GatewayOptions gateway, ApiKeyStore keys, InMemoryAliasStore? aliases, IRequestObserver? observer,
        TrafficLogSettings? traffic, LifecycleSettings? lifecycle, Action<IServiceCollection>? withLifecycle = null)
    {
        string? trafficStore = builder.Services.AddGatewayTrafficLog(builder.Configuration, traffic);
        string? lifecycleStore = lifecycle is null ? null : builder.Services.AddServerLifecycle(lifecycle);
        if (lifecycle is not null) withLifecycle?.Invoke(builder.Services);
        AddGatewayServices(builder.Services, gateway, aliases, observer, keys);
        return new GatewayParts(traffic, trafficStore, lifecycle, lifecycleStore);
    }

    /// <summary>The gateway's routes (its API, the lifecycle's, traffic, dashboard, the proxy) and the fallback.</summary>
    public static void MapGateway(WebApplication app, GatewayParts parts)
    {
        LogTrafficMode(app, parts.Traffic, parts.TrafficStore);
        if (parts.Lifecycle is not null)
        {
            app.Logger.LogInformation("Adapter lifecycle: {Store}", parts.LifecycleStore);
            app.MapLifecycleApi();
        }
        app.MapGatewayApi();
        app.MapTrafficApi();
        app.MapDashboard();
        app.MapReverseProxy(pipeline =>
        {
            pipeline.UseMiddleware<GatewayProxyMiddleware>();
            pipeline.UseLoadBalancing();
            pipeline.UsePassiveHealthChecks();
        });
        MapFallback(app);
    }

    /// <param name="processKey">A key of this process for itself (serve's controller): added only when other keys are configured.</param>
    public static WebApplicationBuilder CreateBuilder(HostSettings settings, string serviceName, out ApiKeyStore keys, ApiKeyEntry? processKey = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseUrls([.. settings.Urls]);
        builder.WebHost.ConfigureKestrel(o => o.AddServerHeader = false);
        builder.Logging.AddFilter("Yarp", LogLevel.Warning);
        builder.Logging.AddFilter("Quartz", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);
        // Authentication pulls in data protection, which nothing here uses (API keys, no cookies).
        builder.Logging.AddFilter("Microsoft.AspNetCore.DataProtection", LogLevel.Error);
        settings.ConfigureLogging?.Invoke(builder.Logging);

        var fromConfig = builder.Configuration.GetSection("TuneGateway:ApiKeys").Get<List<ApiKeyEntry>>() ?? [];
        List<ApiKeyEntry> entries = [.. settings.ApiKeys, .. fromConfig];
        if (processKey is not null && entries.Count > 0) entries.Add(processKey);
        keys = new ApiKeyStore(entries);
        builder.Services.AddApiKeyAuth(keys);
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = ServerJson.Options.PropertyNamingPolicy;
            o.SerializerOptions.Encoder = ServerJson.Options.Encoder;
        });
        builder.Services.AddHttpClient();
        builder.Services.AddServerTelemetry(serviceName, settings.OtlpEndpoint);
        settings.ConfigureServices?.Invoke(builder.Services);
        return builder;
    }

    private static void AddGatewayServices(IServiceCollection services, GatewayOptions gateway, InMemoryAliasStore? aliases, IRequestObserver? observer, ApiKeyStore keys)
    {
        // A worker key that is also a gateway key would let any worker that receives it call the public API with it.
        if (gateway.WorkerKey is { } workerKey && keys.Contains(workerKey))
            throw new ArgumentException("The worker key (--worker-key, TUNEGW_WORKER_KEY) is also one of the gateway's API keys; workers receive it, so it must not be valid on the gateway. Give workers a key of their own.");
        var allowList = new WorkerAllowList(gateway.WorkerAllowList);
        services.AddSingleton(allowList);
        services.AddSingleton(gateway);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<WorkerRegistry>();
        services.AddSingleton<WorkerCredentials>();
        services.AddSingleton<GatewayMetrics>();
        // The lifecycle's aliases when its stores are registered (their reader, LifecycleManager as the
        // editor); else, or when the caller hands some in, aliases in this process's memory.
        if (aliases is not null)
        {
            services.AddSingleton<IAliasReader>(aliases);
            services.AddSingleton<IAliasEditor>(aliases);
        }
        else
        {
            services.TryAddSingleton<InMemoryAliasStore>(sp => new InMemoryAliasStore(sp.GetService<TimeProvider>()));
            services.TryAddSingleton<IAliasReader>(sp => sp.GetRequiredService<InMemoryAliasStore>());
            services.TryAddSingleton<IAliasEditor>(sp => sp.GetRequiredService<InMemoryAliasStore>());
        }
        services.AddSingleton<IRequestObserver>(sp =>
        {
            // The traffic log's observer (when the log is on) first, so that the caller's sees an exchange once it was logged.
            IRequestObserver[] observers = [.. new[] { sp.GetService<TrafficLogObserver>(), observer }.OfType<IRequestObserver>()];
            return observers.Length switch
            {
                0 => NullRequestObserver.Instance,
                1 => observers[0],
                _ => new CompositeRequestObserver(observers, sp.GetRequiredService<ILogger<CompositeRequestObserver>>()),
            };
        });
        services.AddSingleton<AliasResolver>();
        services.AddHostedService(sp => sp.GetRequiredService<AliasResolver>());
        services.AddSingleton<Yarp.ReverseProxy.LoadBalancing.ILoadBalancingPolicy, AdapterAffinityPolicy>();
        services.Configure<TransportFailureRateHealthPolicyOptions>(o =>
        {
            // A dead worker fails every request: take it out after a few, not after YARP's default ten.
            o.MinimalTotalCountThreshold = 3;
            o.DetectionWindowSize = TimeSpan.FromSeconds(30);
        });
        services.AddHttpClient(GatewayProxyConfig.HttpClientName, c => c.Timeout = TimeSpan.FromMinutes(2));
        services.AddReverseProxy()
            .LoadFromMemory(GatewayProxyConfig.Routes, [])
            .AddTransforms(context =>
            {
                // Resolved once per route, not per request (both are singletons).
                var registry = context.Services.GetRequiredService<WorkerRegistry>();
                var credentials = context.Services.GetRequiredService<WorkerCredentials>();
                context.AddRequestTransform(transform =>
                {
                    // The gateway has checked the client's key; what the worker sees depends on how it joined.
                    var http = transform.HttpContext;
                    var destination = http.GetReverseProxyFeature().ProxiedDestination;
                    var worker = destination is null ? null : registry.Find(destination.DestinationId);
                    credentials.Apply(transform.ProxyRequest.Headers, worker,
                        http.Request.Headers.Authorization.FirstOrDefault(), http.Request.Headers["X-Api-Key"].FirstOrDefault());
                    return ValueTask.CompletedTask;
                });
                context.AddResponseTransform(transform =>
                {
                    var headers = transform.HttpContext.Response.Headers;
                    // The names come from the client's body: only those a header can carry are echoed (a NUL in one failed the whole response).
                    if (transform.HttpContext.Features.Get<GatewayRoute>() is { } target && IsHeaderSafe(target.Model))
                    {
                        headers[WireHeaders.Model] = target.Model;
                        if (target.Alias is not null && IsHeaderSafe(target.Alias))
                        {
                            headers[WireHeaders.Alias] = target.Alias;
                            headers[WireHeaders.Arm] = target.Model;
                        }
                    }
                    if (gateway.ExposeWorkerHeader && transform.HttpContext.GetReverseProxyFeature().ProxiedDestination is { } destination)
                        headers[WorkerHeader] = destination.DestinationId;
                    return ValueTask.CompletedTask;
                });
            });
        services.AddSingleton<GatewayProxyConfig>();
        services.AddHostedService(sp => sp.GetRequiredService<GatewayProxyConfig>());
    }

    private static bool IsHeaderSafe(string value) => value.Length is > 0 and <= 256 && value.All(c => c is >= ' ' and <= '~');

    /// <summary>The middleware and routes of every role: errors, the internal hop's guard (serve), keys, JSON checks, health, version, metrics.</summary>
    public static void UseCommon(WebApplication app, ApiKeyStore keys, string role, InternalHop? hop = null)
    {
        app.Use((context, next) => ApiErrors.Middleware(context, () => next(context)));
        if (hop is not null) app.Use((context, next) => hop.Guard(context, () => next(context)));
        app.UseApiKeyAuth();
        app.Use((context, next) => JsonText.Middleware(context, () => next(context)));
        AuthSetup.LogKeyMode(keys, app.Logger, role);
        app.MapGet("/healthz", () => Results.Json(new { status = "alive" }));
        app.MapGet("/version", () => Results.Json(new { version = Version }));
        app.MapMetrics();
    }

    private static void LogTrafficMode(WebApplication app, TrafficLogSettings? traffic, string? store)
    {
        if (store is not null) app.Logger.LogInformation("Traffic log: {Store}", store);
        else if (traffic is { Enabled: true }) app.Logger.LogWarning("The traffic log is off: no --redis or --data-dir given (nor TuneGateway:TrafficLog in configuration).");
        else if (traffic is not null) app.Logger.LogInformation("The traffic log is off.");
    }

    /// <summary>
    /// Every path no route takes, file-like ones included (MapFallback's default pattern skips paths
    /// with a dot, which then got an empty 404).
    /// </summary>
    public static void MapFallback(WebApplication app) => app.MapFallback("{**path}", context =>
        ApiErrors.WriteAsync(context, UnsupportedMediaType(context)
            ?? ApiException.NoRoute(context.Request)));

    /// <summary>
    /// A route that binds a JSON body does not match a request of another content type, and
    /// routing then picks the fallback: say 415 for such a route rather than that there is none.
    /// </summary>
    private static ApiException? UnsupportedMediaType(HttpContext context)
    {
        var request = context.Request;
        foreach (var endpoint in context.RequestServices.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            if (endpoint.Metadata.GetMetadata<Microsoft.AspNetCore.Http.Metadata.IAcceptsMetadata>() is not { ContentTypes.Count: > 0 } accepts) continue;
            if (endpoint.Metadata.GetMetadata<HttpMethodMetadata>() is { } methods && !methods.HttpMethods.Contains(request.Method, StringComparer.OrdinalIgnoreCase)) continue;
            var template = Microsoft.AspNetCore.Routing.Template.TemplateParser.Parse(endpoint.RoutePattern.RawText ?? "");
            if (!new Microsoft.AspNetCore.Routing.Template.TemplateMatcher(template, new RouteValueDictionary()).TryMatch(request.Path, new RouteValueDictionary())) continue;
            return new ApiException(StatusCodes.Status415UnsupportedMediaType,
                $"{request.Method} {request.Path} takes {string.Join(" or ", accepts.ContentTypes)}; the request's content type is '{request.ContentType}'.",
                ApiErrorTypes.InvalidRequest, code: "unsupported_media_type");
        }
        return null;
    }
}
