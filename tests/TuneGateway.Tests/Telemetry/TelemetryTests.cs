using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using TuneGateway.Controller;
using TuneGateway.Engine.Serving;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Common;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Worker;
using TuneGateway.Storage;
using TuneGateway.Tests.Server;

namespace TuneGateway.Tests.Telemetry;

/// <summary>
/// The servers' OpenTelemetry wiring, seen through in-memory exporters added the way a
/// deployment adds its own: one trace follows a completion from the gateway through the proxy hop
/// into the worker and the engine's queue, prefill and decode; the key metrics are exported (the
/// engine's, the worker's gauges and adapter residency, the gateway's requests, the traffic log's
/// and the controller's); logs carry the trace they were written in.
/// <para>
/// OpenTelemetry subscribes to meters by name process-wide, so a host started by another test would
/// report into the same instruments (a gauge of the last callback wins); this class therefore runs
/// alone, after the parallel tests.
/// </para>
/// </summary>
[Collection(Name)]
public sealed class TelemetryTests : IAsyncLifetime
{
    public const string Name = "Telemetry (runs alone)";

    private readonly LockedCollection<Activity> _spans = new();
    private readonly LockedCollection<MetricSnapshot> _metrics = new();
    private readonly LockedCollection<LogRecord> _logs = new();
    private WebApplication _app = null!;
    private string _baseUrl = "";

    public async Task InitializeAsync()
    {
        var settings = ServerTestHost.Settings() with
        {
            ConfigureServices = services =>
            {
                services.ConfigureOpenTelemetryTracerProvider(tracing => tracing.AddInMemoryExporter(_spans));
                services.ConfigureOpenTelemetryMeterProvider(metrics => metrics.AddInMemoryExporter(_metrics));
                services.ConfigureOpenTelemetryLoggerProvider(logging => logging.AddInMemoryExporter(_logs));
            },
        };
        _app = ServeHost.Create(new WorkerOptions { Engine = ServerTestHost.TinyEngine() }, new GatewayOptions(), settings);
        await _app.StartAsync();
        _baseUrl = ServerTestHost.BaseUrl(_app);
        using var http = new HttpClient();
        await ServerTestHost.WaitReadyAsync(http, _baseUrl);
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task OneTraceFollowsACompletionFromTheGatewayIntoTheEngine()
    {
        // An instrumented caller: its HttpClient span carries the trace to the server, and other
        // tests' spans (the sources are process-wide) are told apart by the trace id.
        using var caller = new Activity("telemetry-test.caller").SetIdFormat(ActivityIdFormat.W3C);
        caller.ActivityTraceFlags = ActivityTraceFlags.Recorded; // a sampled trace: the server's parent-based sampler follows it
        caller.Start();
        var traceId = caller.TraceId;
        using (var http = new HttpClient { Timeout = ServerTestHost.Patience })
        {
            using var response = await http.SendAsync(ServerTestHost.Post(_baseUrl + "/v1/completions",
                new { model = "shout", prompt = "hello there", max_tokens = 4, temperature = 0, ignore_eos = true }));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        caller.Stop();

        // Spans are exported as they end; the outer ones end after the response has been sent.
        Activity[] trace = [];
        try
        {
            await ServerTestHost.WaitUntilAsync(() =>
            {
                trace = Spans(traceId);
                return Task.FromResult(trace.Any(s => IsServer(s, "/v1/completions")) && trace.Any(s => IsServer(s, "/_worker/v1/completions"))
                    && trace.Any(s => s.OperationName == "engine.decode"));
            }, "the completion's spans", TimeSpan.FromSeconds(20));
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"{ex.Message} Spans of the trace: {Describe(trace)}; all spans: {Describe(AllSpans())}", ex);
        }
        var byId = trace.ToDictionary(s => s.SpanId);
        IEnumerable<Activity> Ancestors(Activity span)
        {
            for (var parent = span.ParentSpanId; byId.TryGetValue(parent, out var p); parent = p.ParentSpanId) yield return p;
        }

        var sent = Assert.Single(trace, s => s.Kind == ActivityKind.Client && Tag(s, "url.full") == _baseUrl + "/v1/completions");
        Assert.Equal(caller.SpanId, sent.ParentSpanId);
        var gateway = Assert.Single(trace, s => IsServer(s, "/v1/completions"));
        Assert.Equal(sent.SpanId, gateway.ParentSpanId);
        Assert.Equal("tunegw", ServiceName());

        var proxied = Assert.Single(trace, s => s.Kind == ActivityKind.Client && Tag(s, "url.full")?.EndsWith("/_worker/v1/completions", StringComparison.Ordinal) == true);
        Assert.Contains(gateway, Ancestors(proxied));

        var worker = Assert.Single(trace, s => IsServer(s, "/_worker/v1/completions"));
        Assert.Equal(proxied.SpanId, worker.ParentSpanId);

        foreach (string name in new[] { "engine.queue", "engine.prefill", "engine.decode" })
        {
            var span = Assert.Single(trace, s => s.OperationName == name);
            Assert.Equal(EngineTelemetry.Name, span.Source.Name);
            Assert.Equal("shout", Tag(span, "tunegw.adapter"));
            Assert.Equal([worker, proxied, gateway], Ancestors(span).Where(a => a == worker || a == proxied || a == gateway));
        }
        var decode = trace.Single(s => s.OperationName == "engine.decode");
        Assert.Equal(4, decode.GetTagItem("gen_ai.usage.output_tokens"));
        var prefill = trace.Single(s => s.OperationName == "engine.prefill");
        var queue = trace.Single(s => s.OperationName == "engine.queue");
        Assert.True(queue.StartTimeUtc <= prefill.StartTimeUtc && prefill.StartTimeUtc <= decode.StartTimeUtc, "queue, prefill and decode follow each other");
    }

    [Fact]
    public async Task KeyMetricsAreExported()
    {
        using (var http = new HttpClient { Timeout = ServerTestHost.Patience })
        {
            using var response = await http.SendAsync(ServerTestHost.Post(_baseUrl + "/v1/completions", new { model = "shout", prompt = "count me", max_tokens = 3, temperature = 0, ignore_eos = true }));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // The traffic log's instruments, on the host's meter factory as the writer creates them.
        using var trafficLog = new TrafficLogMetrics(_app.Services.GetRequiredService<IMeterFactory>(), () => 7, () => 2);
        ControllerTelemetry.RecordJob("canary", "telemetry-test", TimeSpan.FromSeconds(3), failed: true);

        // Collects every reader; the Prometheus reader (pull only) reports false, the in-memory one exports.
        _app.Services.GetRequiredService<MeterProvider>().ForceFlush(30_000);
        var exported = _metrics.Snapshot();
        MetricPoint[] Points(string name)
        {
            var metrics = exported.Where(m => m.Name == name).ToList();
            Assert.True(metrics.Count > 0, $"{name} was not exported; exported: {string.Join(", ", exported.Select(m => m.Name).Distinct())}");
            return [.. metrics.SelectMany(m => m.MetricPoints)];
        }
        static bool Has(MetricPoint point, string key, object value)
        {
            foreach (var tag in point.Tags) if (tag.Key == key && Equals(tag.Value, value)) return true;
            return false;
        }

        // The engine: time to first token and tokens, by model (here the adapter).
        Assert.Contains(Points("tunegw.engine.time_to_first_token"), p => Has(p, "model", "shout") && p.GetHistogramCount() >= 1);
        Assert.Contains(Points("tunegw.engine.requests"), p => Has(p, "model", "shout") && p.GetSumLong() >= 1);
        Assert.Contains(Points("tunegw.engine.prompt_tokens"), p => Has(p, "model", "shout") && p.GetSumLong() >= 1);
        Assert.Contains(Points("tunegw.engine.completion_tokens"), p => Has(p, "model", "shout") && p.GetSumLong() >= 3);
        // The gateway's requests by model and status.
        Assert.Contains(Points("tunegw.gateway.requests"), p => Has(p, "model", "shout") && Has(p, "status", 200) && p.GetSumLong() >= 1);
        // The worker's gauges: queue depth, running batch, KV cache, adapters resident and residency lookups.
        Assert.Single(Points("tunegw.worker.queue_depth"));
        Assert.Single(Points("tunegw.worker.running"));
        var cache = Assert.Single(Points("tunegw.worker.kv_cache_usage"));
        Assert.InRange(cache.GetGaugeLastValueDouble(), 0, 1);
        var resident = Points("tunegw.worker.adapters_resident");
        Assert.True(resident.Any(p => Has(p, "tier", "device") && p.GetGaugeLastValueLong() >= 1),
            "adapters resident: " + string.Join(", ", resident.Select(p => $"{string.Join(",", TagsOf(p))}={p.GetGaugeLastValueLong()}")));
        Assert.Contains(Points("tunegw.worker.adapter_residency"), p => Has(p, "result", "miss") && p.GetSumLong() >= 1);
        Assert.Contains(Points("tunegw.worker.adapter_loads"), p => p.GetSumLong() >= 1);
        // The traffic log (meter TuneGateway.Storage) and the controller (TuneGateway.Controller).
        Assert.Contains(Points("tunegw.traffic.backlog"), p => Has(p, "location", "memory") && p.GetGaugeLastValueLong() == 7);
        Assert.Contains(Points("tunegw.controller.job_failures"), p => Has(p, "adapter", "telemetry-test") && p.GetSumLong() >= 1);
        Assert.Contains(Points("tunegw.controller.job_duration"), p => Has(p, "adapter", "telemetry-test") && p.GetHistogramCount() >= 1);
    }

    [Fact]
    public void ControllerJobsAreTracedAndLogsCarryTheirTraceIds()
    {
        var logger = _app.Services.GetRequiredService<ILogger<TelemetryTests>>();
        using var job = ControllerTelemetry.Source.StartActivity("pipeline.run");
        Assert.NotNull(job);
        job!.SetTag("tunegw.adapter", "telemetry-test");
        logger.LogWarning("Pipeline step failed for {Adapter}", "telemetry-test");
        job.Stop();

        var record = Assert.Single(_logs.Snapshot(), l => l.CategoryName == typeof(TelemetryTests).FullName);
        Assert.Equal(job.TraceId, record.TraceId);
        Assert.Equal(job.SpanId, record.SpanId);
        Assert.Equal("Pipeline step failed for telemetry-test", record.FormattedMessage);
        Assert.Contains(_spans.Snapshot(), s => s.TraceId == job.TraceId && s.Source.Name == ControllerTelemetry.Name && s.OperationName == "pipeline.run");
    }

    private static IEnumerable<string> TagsOf(MetricPoint point)
    {
        foreach (var tag in point.Tags) yield return $"{tag.Key}={tag.Value}";
    }

    private Activity[] AllSpans() => _spans.Snapshot();

    private static string Describe(IEnumerable<Activity> spans) => string.Join("; ", spans.Select(s =>
        $"{s.Source.Name}/{s.OperationName} {s.Kind} {s.DisplayName} trace={s.TraceId} span={s.SpanId} parent={s.ParentSpanId} path={Tag(s, "url.path")} url={Tag(s, "url.full")}"));

    private Activity[] Spans(ActivityTraceId traceId) => [.. _spans.Snapshot().Where(s => s.TraceId == traceId)];

    private static bool IsServer(Activity span, string path) => span.Kind == ActivityKind.Server && Tag(span, "url.path") == path;

    private static string? Tag(Activity span, string key) => span.GetTagItem(key) as string;

    private string? ServiceName()
    {
        var resource = _app.Services.GetRequiredService<TracerProvider>().GetResource();
        return resource.Attributes.FirstOrDefault(a => a.Key == "service.name").Value as string;
    }
}

/// <summary>The collection <see cref="TelemetryTests"/> runs in: not in parallel with any other test.</summary>
[CollectionDefinition(TelemetryTests.Name, DisableParallelization = true)]
public sealed class TelemetryCollection;
