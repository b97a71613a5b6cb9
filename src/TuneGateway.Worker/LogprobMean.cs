namespace TuneGateway.Worker;

// What the worker reports as Gateway.Common.MeanLogprob; the gateway only reads the result.

/// <summary>Running mean of the sampled tokens' log-probabilities of one choice (non-finite values are skipped).</summary>
internal struct LogprobMean
{
    private double _sum;
    private int _count;

    public void Add(float logprob)
    {
        if (!float.IsFinite(logprob)) return;
        _sum += logprob;
        _count++;
    }

    /// <summary>The mean, or null when no token had a finite log-probability.</summary>
    public readonly double? Value => _count == 0 ? null : _sum / _count;
}
