using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using TuneGateway.Engine.Serving;

namespace TuneGateway.Server.Common;

/// <summary>
/// The server's traces and metrics (ActivitySource and Meter <c>TuneGateway.Server</c>) and the
/// OpenTelemetry wiring shared by worker, gateway and serve: traces of ASP.NET Core, HttpClient,
/// YARP and the engine; metrics of those and the engine's; a Prometheus scrape endpoint at
/// <c>/metrics</c>; OTLP export when an endpoint is configured.
/// </summary>
public static class ServerTelemetry
{
    public const string Name = "TuneGateway.Server";

    public static readonly ActivitySource Source = new(Name);

    /// <summary>The meter of <c>TuneGateway.Storage</c> (the traffic log writer's counters).</summary>
    public const string StorageMeterName = "TuneGateway.Storage";

    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

    /// <summary>Registers OpenTelemetry; <paramref name="otlpEndpoint"/> (or OTEL_EXPORTER_OTLP_ENDPOINT) turns on OTLP export.</summary>
    public static IServiceCollection AddServerTelemetry(this IServiceCollection services, string serviceName, string? otlpEndpoint)
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
                    .AddSource(Name, EngineTelemetry.Name, "Yarp.ReverseProxy");
                if (otlp) tracing.AddOtlpExporter(Otlp);
            })
            .WithMetrics(metrics =>
            {
                metrics.AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    // The storage meter: the traffic log writer's queue, spill, writes and drops.
                    .AddMeter(Name, EngineTelemetry.Name, StorageMeterName)
                    // Latencies in seconds: buckets from milliseconds to minutes (the default ones suit milliseconds).
                    .AddView(instrument => instrument.Unit == "s" && instrument.GetType().Name.StartsWith("Histogram", StringComparison.Ordinal)
                        ? new ExplicitBucketHistogramConfiguration { Boundaries = LatencyBuckets }
                        : null)
                    .AddPrometheusExporter();
                if (otlp) metrics.AddOtlpExporter(Otlp);
            });
        return services;
    }

    /// <summary>Maps the Prometheus scrape endpoint at <c>/metrics</c>.</summary>
    public static void MapMetrics(this WebApplication app) => app.MapPrometheusScrapingEndpoint("/metrics");

    /// <summary>Health, readiness and metrics requests: not traced, not logged, not authenticated.</summary>
    public static bool IsOperational(PathString path) =>
        path.StartsWithSegments("/healthz") || path.StartsWithSegments("/readyz") || path.StartsWithSegments("/metrics");
}
