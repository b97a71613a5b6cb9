namespace TuneGateway.Controller.Statistics;

/// <summary>
/// Everything observed on one arm of a canary since it started: counts, a summary of the task
/// metric and the latency samples. Cumulative, not per look; the controller builds it from the
/// request log.
/// </summary>
/// <remarks>
/// Rates are per request: the positive-feedback rate is the fraction of served requests that got a
/// positive rating, so requests without feedback count as trials without the event. This keeps the
/// denominator under the router's control (the fraction of users who rate at all may itself differ
/// between the arms).
/// </remarks>
public sealed record ArmObservations
{
    /// <summary>Requests routed to this arm.</summary>
    public long Requests { get; init; }

    /// <summary>Requests that failed (5xx, timeouts, generation errors).</summary>
    public long Errors { get; init; }

    /// <summary>Requests with positive user feedback.</summary>
    public long PositiveFeedback { get; init; }

    /// <summary>Requests with negative user feedback.</summary>
    public long NegativeFeedback { get; init; }

    /// <summary>The task metric (e.g. a judge score or exact match in [0, 1]) on the requests that were scored.</summary>
    public MetricSummary TaskMetric { get; init; }

    /// <summary>End-to-end latencies in milliseconds (all requests, or a uniform sample of them).</summary>
    public IReadOnlyList<double> LatenciesMs { get; init; } = [];

    /// <summary>Times to first token in milliseconds (all streamed requests, or a uniform sample).</summary>
    public IReadOnlyList<double> TimeToFirstTokenMs { get; init; } = [];

    /// <summary>Throws if the counts are inconsistent (negative, or more events than requests).</summary>
    public void Validate(string arm)
    {
        if (Requests < 0) throw new ArgumentException($"{arm}: requests must be non-negative.");
        Check(Errors, nameof(Errors));
        Check(PositiveFeedback, nameof(PositiveFeedback));
        Check(NegativeFeedback, nameof(NegativeFeedback));
        if (TaskMetric.Count < 0) throw new ArgumentException($"{arm}: the task metric count must be non-negative.");
        ArgumentNullException.ThrowIfNull(LatenciesMs);
        ArgumentNullException.ThrowIfNull(TimeToFirstTokenMs);

        void Check(long count, string name)
        {
            if (count < 0 || count > Requests) throw new ArgumentException($"{arm}: {name} must lie between 0 and the number of requests ({Requests}), not {count}.");
        }
    }
}
