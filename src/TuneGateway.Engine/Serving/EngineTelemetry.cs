using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace TuneGateway.Engine.Serving;

/// <summary>
/// The engine's traces and metrics, through the BCL's ActivitySource and Meter so that the host
/// (OpenTelemetry) decides where they go. Per request: spans for queue wait, prefill and decode
/// under the caller's span; histograms of time to first token, inter-token latency and latency.
/// </summary>
public static class EngineTelemetry
{
    public const string Name = "TuneGateway.Engine";

    public static readonly ActivitySource Source = new(Name);
    public static readonly Meter Meter = new(Name);

    private static readonly Counter<long> PromptTokens = Meter.CreateCounter<long>("tunegw.engine.prompt_tokens", "{token}", "Prompt tokens processed.");
    private static readonly Counter<long> CompletionTokens = Meter.CreateCounter<long>("tunegw.engine.completion_tokens", "{token}", "Tokens generated.");
    private static readonly Counter<long> Requests = Meter.CreateCounter<long>("tunegw.engine.requests", "{request}", "Requests finished, by finish reason.");
    private static readonly Histogram<double> TimeToFirstToken = Meter.CreateHistogram<double>("tunegw.engine.time_to_first_token", "s", "Time from arrival to the first generated token.");
    private static readonly Histogram<double> InterTokenLatency = Meter.CreateHistogram<double>("tunegw.engine.inter_token_latency", "s", "Mean time between generated tokens of a request.");
    private static readonly Histogram<double> QueueTime = Meter.CreateHistogram<double>("tunegw.engine.queue_time", "s", "Time a request waited for a batch slot.");
    private static readonly Histogram<double> Latency = Meter.CreateHistogram<double>("tunegw.engine.request_latency", "s", "Time from arrival to the last token.");

    // vLLM's names for the same figures: prefix_cache_queries / prefix_cache_hits (tokens), num_preemptions.
    private static readonly Counter<long> PrefixQueries = Meter.CreateCounter<long>("tunegw.engine.prefix_cache.queries", "{token}", "Prompt tokens looked up in the prefix cache.");
    private static readonly Counter<long> PrefixHits = Meter.CreateCounter<long>("tunegw.engine.prefix_cache.hits", "{token}", "Prompt tokens whose keys and values were found in the prefix cache.");
    private static readonly Counter<long> Preemptions = Meter.CreateCounter<long>("tunegw.engine.preemptions", "{sequence}", "Running sequences taken out of the batch to free KV cache blocks.");

    internal static void RecordPrefixLookup(Scheduler.Sequence s, long queried, long hits)
    {
        if (queried == 0) return;
        var model = new KeyValuePair<string, object?>("model", s.Request.Adapter ?? "base");
        PrefixQueries.Add(queried, model);
        PrefixHits.Add(hits, model);
    }

    internal static void RecordPreemption(Scheduler.Sequence s) =>
        Preemptions.Add(1, new KeyValuePair<string, object?>("model", s.Request.Adapter ?? "base"));

    internal static void RecordFinished(Scheduler.Sequence s, FinishReason reason, GenerationTimings timings, long now)
    {
        var model = new KeyValuePair<string, object?>("model", s.Request.Adapter ?? "base");
        var finish = new KeyValuePair<string, object?>("finish_reason", reason.ToString().ToLowerInvariant());
        Requests.Add(1, model, finish);
        if (s.Generated > 0)
        {
            PromptTokens.Add(s.PromptLength, model);
            CompletionTokens.Add(s.Generated, model);
            TimeToFirstToken.Record(timings.TimeToFirstTokenSeconds, model);
            if (s.Generated > 1) InterTokenLatency.Record(timings.MeanInterTokenSeconds, model);
        }
        QueueTime.Record(timings.QueueSeconds, model);
        Latency.Record(timings.TotalSeconds, model, finish);

        if (!Source.HasListeners()) return;
        DateTimeOffset At(long timestamp) => s.ArrivedAt + Stopwatch.GetElapsedTime(s.Arrived, timestamp);
        Span("engine.queue", s, s.ArrivedAt, At(s.Admitted == 0 ? now : s.Admitted));
        if (s.Admitted != 0) Span("engine.prefill", s, At(s.Admitted), At(s.FirstToken == 0 ? now : s.FirstToken));
        if (s.FirstToken != 0) Span("engine.decode", s, At(s.FirstToken), At(now), ("gen_ai.usage.output_tokens", s.Generated));
    }

    private static void Span(string name, Scheduler.Sequence s, DateTimeOffset start, DateTimeOffset end, params (string Key, object? Value)[] tags)
    {
        using var activity = Source.StartActivity(name, ActivityKind.Internal, s.Parent, startTime: start);
        if (activity is null) return;
        activity.SetTag("tunegw.request_id", s.Request.RequestId);
        activity.SetTag("tunegw.adapter", s.Request.Adapter);
        activity.SetTag("gen_ai.usage.input_tokens", s.PromptLength);
        foreach (var (key, value) in tags) activity.SetTag(key, value);
        activity.SetEndTime(end.UtcDateTime);
    }
}
