using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Console;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace TuneGateway.Gateway.Common;

/// <summary>
/// The server's traces and metrics (ActivitySource and Meter <c>TuneGateway.Server</c>) and the
/// OpenTelemetry wiring shared by worker, gateway, serve and controller: traces of ASP.NET Core,
/// HttpClient and YARP; metrics of those and of the traffic log (<c>TuneGateway.Storage</c>); the
/// engine's and the controller's, which this assembly does not reference, where their hosts add them
/// (<see cref="AddTelemetrySource"/>); logs through OpenTelemetry (each record
/// carries the trace and span id of the request it was written in; the console shows them as a
/// scope); a Prometheus scrape endpoint at <c>/metrics</c>; OTLP export of all three when an
/// endpoint is configured. Tests add exporters of their own through
/// <see cref="HostSettings.ConfigureServices"/> (<c>ConfigureOpenTelemetryTracerProvider</c> and friends).
/// </summary>
public static class ServerTelemetry
{
    public const string Name = "TuneGateway.Server";

    public static readonly ActivitySource Source = new(Name);

    /// <summary>The traffic log's meter (its metrics class is internal to the storage assembly).</summary>
    public const string StorageMeterName = "TuneGateway.Storage";

    /// <summary>Every ActivitySource every host exports (besides those added with <see cref="AddTelemetrySource"/>).</summary>
    public static readonly IReadOnlyList<string> SourceNames = [Name, "Yarp.ReverseProxy"];

    /// <summary>Every project Meter every host exports (besides ASP.NET Core's, HttpClient's and those added with <see cref="AddTelemetrySource"/>).</summary>
    public static readonly IReadOnlyList<string> MeterNames = [Name, StorageMeterName];

    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

    /// <summary>Registers OpenTelemetry; <paramref name="otlpEndpoint"/> (or OTEL_EXPORTER_OTLP_ENDPOINT) turns on OTLP export.</summary>
    /// <param name="withPrometheus">Add the Prometheus scrape exporter (hosts without HTTP, such as the controller, export by OTLP only).</param>
    public static IServiceCollection AddServerTelemetry(this IServiceCollection services, string serviceName, string? otlpEndpoint, bool withPrometheus = true)
    {
        bool otlp = otlpEndpoint is not null || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT"));
        void Otlp(OpenTelemetry.Exporter.OtlpExporterOptions o)
        {
            if (otlpEndpoint is not null) o.Endpoint = new Uri(otlpEndpoint);
        }

        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(serviceName))
            .WithTracing(tracing =>
            {
                tracing.AddAspNetCoreInstrumentation(o => o.Filter = context => !IsOperational(context.Request.Path))
                    .AddHttpClientInstrumentation()
                    .AddSource([.. SourceNames]);
                if (otlp) tracing.AddOtlpExporter(Otlp);
            })
            .WithMetrics(metrics =>
            {
                metrics.AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    .AddMeter([.. MeterNames])
                    // Latencies in seconds: buckets from milliseconds to minutes (the default ones suit milliseconds).
                    .AddView(instrument => instrument.Unit == "s" && instrument.GetType().Name.StartsWith("Histogram", StringComparison.Ordinal)
                        ? new ExplicitBucketHistogramConfiguration { Boundaries = LatencyBuckets }
                        : null);
                if (withPrometheus) metrics.AddPrometheusExporter();
                if (otlp) metrics.AddOtlpExporter(Otlp);
            })
            .WithLogging(logging =>
            {
                if (otlp) logging.AddOtlpExporter(Otlp);
            }, options =>
            {
                options.IncludeScopes = true;
                options.IncludeFormattedMessage = true;
            });
        // The host already puts TraceId and SpanId into every log's scope; let the console show them.
        services.Configure<SimpleConsoleFormatterOptions>(o => o.IncludeScopes = true);
        return services;
    }

    /// <summary>
    /// Exports the ActivitySource and Meter called <paramref name="name"/> through the setup of
    /// <see cref="AddServerTelemetry"/>: how the worker's host adds the engine's and the controller's
    /// host the controller's, so that the gateway names no assembly it does not link.
    /// </summary>
    public static IServiceCollection AddTelemetrySource(this IServiceCollection services, string name) => services
        .ConfigureOpenTelemetryTracerProvider(tracing => tracing.AddSource(name))
        .ConfigureOpenTelemetryMeterProvider(metrics => metrics.AddMeter(name));

    /// <summary>Maps the Prometheus scrape endpoint at <c>/metrics</c>.</summary>
    public static void MapMetrics(this WebApplication app) => app.MapPrometheusScrapingEndpoint("/metrics");

    /// <summary>Health, readiness and metrics requests: not traced, not logged, not authenticated.</summary>
    public static bool IsOperational(PathString path) =>
        path.StartsWithSegments("/healthz") || path.StartsWithSegments("/readyz") || path.StartsWithSegments("/metrics");
}
