namespace TuneGateway.Tests.Statistics;

/// <summary>Exact random variates for the simulation tests, cheap enough to keep them fast.</summary>
internal static class Sampling
{
    /// <summary>
    /// Binomial(n, p) by skipping over failures: the gaps between successes are geometric,
    /// ⌊ln U / ln(1 - p)⌋ failures each, so only about n·min(p, 1-p) uniforms are drawn.
    /// </summary>
    public static long Binomial(Random random, long n, double p)
    {
        if (p <= 0 || n <= 0) return 0;
        if (p >= 1) return n;
        if (p > 0.5) return n - Binomial(random, n, 1 - p);
        double logQ = Math.Log(1 - p);
        long count = 0;
        double position = 0;
        while (true)
        {
            position += Math.Floor(Math.Log(1 - random.NextDouble()) / logQ) + 1;
            if (position > n) return count;
            count++;
        }
    }

    /// <summary>A standard normal variate (Box–Muller).</summary>
    public static double Normal(Random random)
    {
        double u1 = 1 - random.NextDouble();
        double u2 = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
