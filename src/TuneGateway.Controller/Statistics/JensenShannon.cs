namespace TuneGateway.Controller.Statistics;

/// <summary>
/// Jensen–Shannon divergence and distance (base 2) between two discrete distributions given as
/// count histograms, dense or sparse (e.g. token id → count).
/// </summary>
/// <remarks>
/// <para>JSD(P, Q) = ½ KL(P‖M) + ½ KL(Q‖M) with M = (P + Q)/2, in bits, lies in [0, 1]; the
/// Jensen–Shannon distance √JSD is a metric on distributions (Endres &amp; Schindelin, "A new
/// metric for probability distributions", IEEE Trans. Inf. Theory, 2003; Lin, "Divergence
/// measures based on the Shannon entropy", 1991).</para>
/// <para><b>Numerics.</b> Per category write pᵢ = mᵢ(1 + r), qᵢ = mᵢ(1 - r) with
/// r = (pᵢ - qᵢ)/(pᵢ + qᵢ); its contribution is ½ mᵢ f(r) / ln 2 with
/// f(r) = (1 + r) ln(1 + r) + (1 - r) ln(1 - r) = Σₖ r^(2k) / (k (2k - 1)). For |r| &lt; ¼ the
/// series is summed (avoiding the cancellation of the two first-order terms when P ≈ Q, the case
/// that matters for drift), otherwise the closed form; a category present on one side only
/// (r = ±1) contributes mᵢ.</para>
/// <para><b>Sampling noise.</b> Plug-in estimates from finite counts are biased upward. For
/// samples of N and M draws from one distribution over K + 1 categories, JSD ≈ (1/8) Σ (pᵢ - qᵢ)²/mᵢ
/// ≈ (1/8)(1/N + 1/M) χ²_K nats, so the expected no-drift distance is about
/// √(K (1/N + 1/M) / (8 ln 2)) (<see cref="NoDriftDistance"/>). Over a raw LLM vocabulary
/// (K in the thousands) this exceeds 0.2 even for 20 000 tokens, which is why the drift detector
/// compares coarsened histograms.</para>
/// </remarks>
public static class JensenShannon
{
    /// <summary>JSD in bits between two sparse count histograms (keys absent on one side count as 0).</summary>
    public static double Divergence<TKey>(IReadOnlyDictionary<TKey, long> p, IReadOnlyDictionary<TKey, long> q) where TKey : notnull
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentNullException.ThrowIfNull(q);
        double totalP = Total(p, nameof(p));
        double totalQ = Total(q, nameof(q));

        var sum = new CompensatedSum();
        foreach (var (key, countP) in p)
        {
            q.TryGetValue(key, out long countQ);
            sum.Add(Contribution(countP / totalP, countQ / totalQ));
        }
        foreach (var (key, countQ) in q)
        {
            if (!p.ContainsKey(key)) sum.Add(Contribution(0, countQ / totalQ));
        }
        return Math.Clamp(sum.Value / Math.Log(2), 0, 1);
    }

    /// <summary>The Jensen–Shannon distance √JSD (base 2), in [0, 1].</summary>
    public static double Distance<TKey>(IReadOnlyDictionary<TKey, long> p, IReadOnlyDictionary<TKey, long> q) where TKey : notnull
        => Math.Sqrt(Divergence(p, q));

    /// <summary>JSD in bits between two dense non-negative weight vectors over the same categories (each normalised here).</summary>
    public static double Divergence(ReadOnlySpan<double> p, ReadOnlySpan<double> q)
    {
        if (p.Length != q.Length) throw new ArgumentException("Both distributions need the same categories.");
        double totalP = Total(p, nameof(p));
        double totalQ = Total(q, nameof(q));
        var sum = new CompensatedSum();
        for (int i = 0; i < p.Length; i++) sum.Add(Contribution(p[i] / totalP, q[i] / totalQ));
        return Math.Clamp(sum.Value / Math.Log(2), 0, 1);
    }

    /// <summary>The Jensen–Shannon distance √JSD (base 2) between two dense weight vectors.</summary>
    public static double Distance(ReadOnlySpan<double> p, ReadOnlySpan<double> q) => Math.Sqrt(Divergence(p, q));

    /// <summary>
    /// The approximate expected JS distance between two histograms of <paramref name="count1"/> and
    /// <paramref name="count2"/> independent draws from one distribution over
    /// <paramref name="categories"/> categories: √((categories - 1)(1/count1 + 1/count2) / (8 ln 2)).
    /// A threshold on the distance only means something well above this noise floor. Capped at 1,
    /// the largest possible distance, which is also the value without data on a side.
    /// </summary>
    public static double NoDriftDistance(int categories, double count1, double count2)
    {
        if (categories < 1) throw new ArgumentOutOfRangeException(nameof(categories));
        if (!(count1 > 0) || !(count2 > 0)) return 1;
        double jsd = (categories - 1) * (1 / count1 + 1 / count2) / (8 * Math.Log(2));
        return Math.Sqrt(Math.Min(jsd, 1));
    }

    /// <summary>½ mᵢ f(r) in nats for one category with probabilities p and q.</summary>
    private static double Contribution(double p, double q)
    {
        double s = p + q;
        if (s == 0) return 0;
        double m = s / 2;
        double r = (p - q) / s;
        double f;
        if (Math.Abs(r) < 0.25)
        {
            // f(r) = Σ r^(2k) / (k (2k-1)); r² < 1/16, so 13 terms reach 1e-16 relative.
            double r2 = r * r;
            double power = r2;
            f = 0;
            for (int k = 1; k <= 30; k++)
            {
                double term = power / (k * (2.0 * k - 1));
                f += term;
                if (term < 1e-17 * f) break;
                power *= r2;
            }
        }
        else if (Math.Abs(r) == 1)
        {
            f = 2 * Math.Log(2); // present on one side only
        }
        else
        {
            f = (1 + r) * SpecialFunctions.Log1P(r) + (1 - r) * SpecialFunctions.Log1P(-r);
        }
        return 0.5 * m * f;
    }

    private static double Total<TKey>(IReadOnlyDictionary<TKey, long> histogram, string name) where TKey : notnull
    {
        long total = 0;
        foreach (long count in histogram.Values)
        {
            if (count < 0) throw new ArgumentException("Counts must be non-negative.", name);
            total += count;
        }
        if (total == 0) throw new ArgumentException("The histogram is empty.", name);
        return total;
    }

    private static double Total(ReadOnlySpan<double> weights, string name)
    {
        double total = 0;
        foreach (double w in weights)
        {
            if (!(w >= 0) || double.IsInfinity(w)) throw new ArgumentException("Weights must be finite and non-negative.", name);
            total += w;
        }
        if (total == 0) throw new ArgumentException("The distribution is empty.", name);
        return total;
    }
}

/// <summary>Neumaier's compensated summation (an improved Kahan sum).</summary>
internal struct CompensatedSum
{
    private double _sum;
    private double _compensation;

    public void Add(double x)
    {
        double t = _sum + x;
        _compensation += Math.Abs(_sum) >= Math.Abs(x) ? (_sum - t) + x : (x - t) + _sum;
        _sum = t;
    }

    public readonly double Value => _sum + _compensation;
}
