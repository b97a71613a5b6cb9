using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using TuneGateway.Controller.Statistics;

namespace TuneGateway.Controller;

/// <summary>Traces and metrics of the retraining loop: job runs, durations and failures, drift scores, canary arms.</summary>
public static class ControllerTelemetry
{
    public const string Name = "TuneGateway.Controller";
    public static readonly ActivitySource Source = new(Name);
    public static readonly Meter Meter = new(Name);

    private static readonly Histogram<double> JobDuration = Meter.CreateHistogram<double>("tunegw.controller.job_duration", "s", "Duration of controller jobs.");
    private static readonly Counter<long> JobFailures = Meter.CreateCounter<long>("tunegw.controller.job_failures", "{job}", "Controller jobs that failed.");
    private static readonly ConcurrentDictionary<(string Adapter, string Feature, string Statistic), double> DriftScores = new();
    private static readonly ConcurrentDictionary<(string Adapter, string Arm, string Metric), double> CanaryMetrics = new();

    static ControllerTelemetry()
    {
        Meter.CreateObservableGauge("tunegw.drift.score", () => DriftScores.Select(kv => new Measurement<double>(kv.Value,
            new KeyValuePair<string, object?>("adapter", kv.Key.Adapter), new KeyValuePair<string, object?>("feature", kv.Key.Feature),
            new KeyValuePair<string, object?>("statistic", kv.Key.Statistic))), description: "Latest drift statistics per adapter and feature.");
        Meter.CreateObservableGauge("tunegw.canary.metric", () => CanaryMetrics.Select(kv => new Measurement<double>(kv.Value,
            new KeyValuePair<string, object?>("adapter", kv.Key.Adapter), new KeyValuePair<string, object?>("arm", kv.Key.Arm),
            new KeyValuePair<string, object?>("metric", kv.Key.Metric))), description: "Latest canary observations per arm.");
    }

    public static void RecordJob(string job, string adapter, TimeSpan duration, bool failed)
    {
        var tags = new TagList { { "job", job }, { "adapter", adapter } };
        JobDuration.Record(duration.TotalSeconds, tags);
        if (failed) JobFailures.Add(1, tags);
    }

    public static void RecordDrift(string adapter, DriftReport report)
    {
        foreach (var n in report.Numeric)
        {
            if (n.Psi is double psi) DriftScores[(adapter, n.Feature, "psi")] = psi;
            if (n.KsPValue is double p) DriftScores[(adapter, n.Feature, "ks_p")] = p;
        }
        if (report.Tokens?.JsDistance is double js) DriftScores[(adapter, "prompt_tokens", "js_distance")] = js;
        if (report.Embeddings?.PValue is double mmd) DriftScores[(adapter, "embeddings", "mmd_p")] = mmd;
    }

    public static void RecordCanary(string adapter, CanaryVerdict verdict)
    {
        CanaryMetrics[(adapter, "control", "requests")] = verdict.ControlRequests;
        CanaryMetrics[(adapter, "candidate", "requests")] = verdict.CandidateRequests;
        if (verdict.PositiveFeedback is { } pf)
        {
            CanaryMetrics[(adapter, "control", "positive_feedback_rate")] = pf.ControlValue;
            CanaryMetrics[(adapter, "candidate", "positive_feedback_rate")] = pf.CandidateValue;
        }
    }
}
