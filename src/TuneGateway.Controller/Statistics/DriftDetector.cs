using System.Globalization;

namespace TuneGateway.Controller.Statistics;

/// <summary>Per-adapter alarm thresholds for drift.</summary>
public sealed record DriftThresholds
{
    /// <summary>PSI above this alarms.</summary>
    public double Psi { get; init; } = 0.2;

    /// <summary>A KS p-value below this alarms.</summary>
    public double KsPValue { get; init; } = 0.01;

    /// <summary>A Jensen–Shannon distance (base 2) above this alarms.</summary>
    public double JsDistance { get; init; } = 0.1;

    /// <summary>An MMD permutation p-value below this alarms.</summary>
    public double MmdPValue { get; init; } = 0.01;

    /// <summary>
    /// Current values a numeric feature needs before its PSI and KS can alarm (they are reported
    /// below it). At 200, PSI &gt; 0.2 on 10 bins happens by chance with probability ≈ 1e-5.
    /// </summary>
    public int MinNumericSamples { get; init; } = 200;

    /// <summary>Current embeddings needed before MMD can alarm.</summary>
    public int MinEmbeddings { get; init; } = 20;

    /// <summary>
    /// The JS distance can alarm only when its no-drift noise floor
    /// (<see cref="JensenShannon.NoDriftDistance"/>) is at most this fraction of the threshold, i.e.
    /// when the window has enough tokens for the threshold to be meaningful.
    /// </summary>
    public double JsMaxNoiseFloorFraction { get; init; } = 0.5;

    public void Validate()
    {
        if (!(Psi > 0)) throw new ArgumentOutOfRangeException(nameof(Psi), Psi, "Must be positive.");
        if (!(KsPValue > 0 && KsPValue < 1)) throw new ArgumentOutOfRangeException(nameof(KsPValue), KsPValue, "Must lie in (0, 1).");
        if (!(JsDistance > 0 && JsDistance <= 1)) throw new ArgumentOutOfRangeException(nameof(JsDistance), JsDistance, "Must lie in (0, 1].");
        if (!(MmdPValue > 0 && MmdPValue < 1)) throw new ArgumentOutOfRangeException(nameof(MmdPValue), MmdPValue, "Must lie in (0, 1).");
        if (MinNumericSamples < 1) throw new ArgumentOutOfRangeException(nameof(MinNumericSamples), MinNumericSamples, "Must be at least 1.");
        if (MinEmbeddings < 2) throw new ArgumentOutOfRangeException(nameof(MinEmbeddings), MinEmbeddings, "Must be at least 2.");
        if (!(JsMaxNoiseFloorFraction > 0 && JsMaxNoiseFloorFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(JsMaxNoiseFloorFraction), JsMaxNoiseFloorFraction, "Must lie in (0, 1].");
    }
}

/// <summary>How the detector computes its statistics.</summary>
public sealed record DriftDetectorOptions
{
    public DriftThresholds Thresholds { get; init; } = new();

    /// <summary>PSI bins (cut at reference quantiles).</summary>
    public int PsiBins { get; init; } = PopulationStabilityIndex.DefaultBins;

    /// <summary>PSI's floor for empty bins.</summary>
    public double PsiEpsilon { get; init; } = PopulationStabilityIndex.DefaultEpsilon;

    public KsPValueMethod KsMethod { get; init; } = KsPValueMethod.Auto;

    /// <summary>
    /// Buckets of the token histograms compared by JS: the reference's most frequent
    /// <c>TokenBuckets - 1</c> tokens, each its own bucket, and one bucket for every other token
    /// (including tokens the reference never saw).
    /// </summary>
    public int TokenBuckets { get; init; } = 64;

    /// <summary>Random relabellings in the MMD permutation test.</summary>
    public int MmdPermutations { get; init; } = MaximumMeanDiscrepancy.DefaultPermutations;

    /// <summary>Current-window embeddings used (a seeded subsample beyond this); the cost is quadratic in the pooled size.</summary>
    public int MaxEmbeddings { get; init; } = 200;

    /// <summary>Seed for the embedding subsample and the permutations.</summary>
    public int Seed { get; init; }

    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Thresholds);
        Thresholds.Validate();
        if (PsiBins < 2) throw new ArgumentOutOfRangeException(nameof(PsiBins), PsiBins, "Need at least 2 bins.");
        if (!(PsiEpsilon > 0 && PsiEpsilon < 1)) throw new ArgumentOutOfRangeException(nameof(PsiEpsilon), PsiEpsilon, "Must lie in (0, 1).");
        if (TokenBuckets < 2) throw new ArgumentOutOfRangeException(nameof(TokenBuckets), TokenBuckets, "Need at least 2 buckets.");
        if (MaxEmbeddings < 2) throw new ArgumentOutOfRangeException(nameof(MaxEmbeddings), MaxEmbeddings, "Must be at least 2.");
        if (1.0 / (MmdPermutations + 1) >= Thresholds.MmdPValue)
            throw new ArgumentOutOfRangeException(nameof(MmdPermutations), MmdPermutations,
                $"With {MmdPermutations} permutations the smallest MMD p-value is 1/{MmdPermutations + 1}, not below the threshold {Thresholds.MmdPValue}: the MMD alarm could never fire.");
    }
}

/// <summary>Drift of one numeric feature.</summary>
/// <param name="Feature">Feature name.</param>
/// <param name="ReferenceCount">Reference points compared (the sketch size).</param>
/// <param name="CurrentCount">Current values.</param>
/// <param name="Psi">Population stability index (null without current values).</param>
/// <param name="KsStatistic">Two-sample KS statistic D (null without current values).</param>
/// <param name="KsPValue">Its p-value (null without current values).</param>
/// <param name="KsMethod">Exact or asymptotic.</param>
/// <param name="Evaluated">Whether the window is large enough for PSI and KS to alarm.</param>
/// <param name="PsiAlarm">PSI above threshold (and evaluated).</param>
/// <param name="KsAlarm">KS p below threshold (and evaluated).</param>
public sealed record NumericDrift(string Feature, int ReferenceCount, int CurrentCount, double? Psi, double? KsStatistic, double? KsPValue,
    KsPValueMethod KsMethod, bool Evaluated, bool PsiAlarm, bool KsAlarm);

/// <summary>Drift of the prompt token distribution.</summary>
/// <param name="JsDistance">Jensen–Shannon distance (base 2) of the bucketed histograms (null without current tokens).</param>
/// <param name="Buckets">Buckets compared.</param>
/// <param name="ReferenceTokens">Tokens in the reference.</param>
/// <param name="CurrentTokens">Tokens in the current window.</param>
/// <param name="NoiseFloor">Approximate JS distance expected without drift at these sample sizes.</param>
/// <param name="Evaluated">Whether the noise floor is low enough for the threshold to alarm.</param>
/// <param name="Alarm">JS distance above threshold (and evaluated).</param>
public sealed record TokenDrift(double? JsDistance, int Buckets, long ReferenceTokens, long CurrentTokens, double NoiseFloor, bool Evaluated, bool Alarm);

/// <summary>Semantic drift of the embeddings.</summary>
/// <param name="Mmd2">Unbiased MMD² estimate (null when not computed).</param>
/// <param name="PValue">Permutation p-value (null when not computed).</param>
/// <param name="Bandwidth">RBF bandwidth σ (median heuristic; null when not computed).</param>
/// <param name="ReferenceCount">Reference embeddings.</param>
/// <param name="CurrentCount">Current embeddings used.</param>
/// <param name="Permutations">Relabellings drawn.</param>
/// <param name="Evaluated">Whether both samples reached the minimum size.</param>
/// <param name="Alarm">p below threshold (and evaluated).</param>
public sealed record EmbeddingDrift(double? Mmd2, double? PValue, double? Bandwidth, int ReferenceCount, int CurrentCount, int Permutations, bool Evaluated, bool Alarm);

/// <summary>The comparison of a current window with an adapter's reference profile.</summary>
/// <param name="Numeric">Per numeric feature present in the profile, in name order.</param>
/// <param name="Tokens">Token drift, null if the profile has no token histogram.</param>
/// <param name="Embeddings">Embedding drift, null if the profile has no embeddings.</param>
/// <param name="Alarms">The thresholds crossed, one line each, e.g. <c>psi latency_ms = 0.31 &gt; 0.2</c>.</param>
/// <param name="Thresholds">The thresholds applied.</param>
public sealed record DriftReport(IReadOnlyList<NumericDrift> Numeric, TokenDrift? Tokens, EmbeddingDrift? Embeddings, IReadOnlyList<string> Alarms, DriftThresholds Thresholds)
{
    public bool DriftDetected => Alarms.Count > 0;
}

/// <summary>
/// Compares a current window of an adapter's traffic with its reference <see cref="DriftProfile"/>:
/// PSI and two-sample KS per numeric feature, Jensen–Shannon distance of the prompt token
/// histograms, MMD with a permutation test on embeddings.
/// </summary>
/// <remarks>
/// <para><b>False alarms.</b> Under no drift, each KS check alarms with probability at most its
/// threshold (0.01; the p-values are exact or conservative: ties and the reference sketch only make
/// them larger), the MMD check at most its threshold (exact permutation test), PSI with probability
/// about P(χ²_(B-1) &gt; threshold·n) (≈ 1e-5 at n = 200, B = 10), and JS essentially never once the
/// noise floor is at most half the threshold (that needs the bucketed χ² to exceed four times its
/// mean). By the union bound a window with four numeric features, tokens and embeddings alarms
/// with probability at most about 4 × 0.01 + 0.01 = 5%. Tighten the p-value thresholds (e.g.
/// Bonferroni) where that is too many for the check's frequency.</para>
/// <para><b>Token buckets.</b> JS over the raw vocabulary is dominated by sampling noise: with K
/// categories its no-drift distance is about √(K (1/N + 1/M)/(8 ln 2)), above 0.2 for a few
/// thousand distinct tokens even at 20 000 tokens per window, so a 0.1 threshold would always alarm.
/// The detector therefore compares the reference's most frequent tokens individually and lumps the
/// rest (and tokens never seen in the reference) into one bucket. A new vocabulary then shows as
/// mass moving into that bucket: with 64 buckets over a Zipf-like vocabulary whose top 63 tokens
/// carry about 60% of the mass, 20% of a window's tokens moving to new ids gives a distance of
/// about 0.12, 10% about 0.07. Shifts among the individually kept frequent tokens count fully.</para>
/// <para><b>Thresholds per adapter.</b> One detector can serve every adapter: pass the adapter's
/// <see cref="DriftThresholds"/> to <see cref="Compare(DriftProfile, DriftWindow, DriftThresholds?)"/>.</para>
/// </remarks>
public sealed class DriftDetector
{
    private readonly DriftDetectorOptions _options;

    public DriftDetector(DriftDetectorOptions? options = null)
    {
        _options = options ?? new DriftDetectorOptions();
        _options.Validate();
    }

    public DriftDetectorOptions Options => _options;

    /// <summary>
    /// Compares <paramref name="current"/> with <paramref name="reference"/>, alarming on
    /// <paramref name="thresholds"/> (the adapter's own) or, if null, on the options' thresholds.
    /// </summary>
    public DriftReport Compare(DriftProfile reference, DriftWindow current, DriftThresholds? thresholds = null)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(current);
        reference.Check();
        thresholds ??= _options.Thresholds;
        thresholds.Validate();
        if (1.0 / (_options.MmdPermutations + 1) >= thresholds.MmdPValue)
            throw new ArgumentOutOfRangeException(nameof(thresholds), thresholds.MmdPValue,
                $"With {_options.MmdPermutations} permutations the smallest MMD p-value is 1/{_options.MmdPermutations + 1}: the MMD threshold {thresholds.MmdPValue} could never be crossed.");
        var alarms = new List<string>();

        var numeric = new List<NumericDrift>();
        foreach (var (feature, sketch) in reference.Numeric.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var drift = CompareNumeric(feature, sketch, current.Values(feature), thresholds);
            numeric.Add(drift);
            if (drift.PsiAlarm) alarms.Add(Invariant($"psi {feature} = {drift.Psi:G3} > {thresholds.Psi:G3} (n = {drift.CurrentCount})"));
            if (drift.KsAlarm) alarms.Add(Invariant($"ks {feature}: D = {drift.KsStatistic:G3}, p = {drift.KsPValue:G3} < {thresholds.KsPValue:G3} (n = {drift.CurrentCount})"));
        }

        TokenDrift? tokens = reference.Tokens is { } tokenSketch ? CompareTokens(tokenSketch, current, thresholds) : null;
        if (tokens is { Alarm: true })
            alarms.Add(Invariant($"js tokens = {tokens.JsDistance:G3} > {thresholds.JsDistance:G3} ({tokens.CurrentTokens} tokens, noise floor {tokens.NoiseFloor:G3})"));

        EmbeddingDrift? embeddings = reference.Embeddings.Count > 0 ? CompareEmbeddings(reference.Embeddings, current.Embeddings, thresholds) : null;
        if (embeddings is { Alarm: true })
            alarms.Add(Invariant($"mmd embeddings: MMD² = {embeddings.Mmd2:G3}, p = {embeddings.PValue:G3} < {thresholds.MmdPValue:G3} (n = {embeddings.CurrentCount})"));

        return new DriftReport(numeric, tokens, embeddings, alarms, thresholds);
    }

    private NumericDrift CompareNumeric(string feature, NumericSketch sketch, IReadOnlyList<double> values, DriftThresholds thresholds)
    {
        if (values.Count == 0)
            return new NumericDrift(feature, sketch.Values.Length, 0, null, null, null, _options.KsMethod, false, false, false);

        double[] sorted = [.. values];
        Array.Sort(sorted);
        var psi = PopulationStabilityIndex.ComputeSorted(sketch.Values, sorted, _options.PsiBins, _options.PsiEpsilon);
        var ks = KolmogorovSmirnov.TwoSampleSorted(sketch.Values, sorted, _options.KsMethod);
        bool evaluated = sorted.Length >= thresholds.MinNumericSamples;
        return new NumericDrift(feature, sketch.Values.Length, sorted.Length, psi.Value, ks.Statistic, ks.PValue, ks.Method, evaluated,
            evaluated && psi.Value > thresholds.Psi, evaluated && ks.PValue < thresholds.KsPValue);
    }

    private TokenDrift CompareTokens(TokenSketch reference, DriftWindow current, DriftThresholds thresholds)
    {
        var top = TokenSketch.MostFrequent(reference.Counts, _options.TokenBuckets - 1).ToList();
        int buckets = top.Count + 1;
        var referenceBuckets = new double[buckets];
        var currentBuckets = new double[buckets];
        long referenceKept = 0;
        long currentKept = 0;
        for (int i = 0; i < top.Count; i++)
        {
            referenceBuckets[i] = top[i].Value;
            referenceKept += top[i].Value;
            long count = current.TokenCounts.GetValueOrDefault(top[i].Key);
            currentBuckets[i] = count;
            currentKept += count;
        }
        referenceBuckets[^1] = reference.Total - referenceKept;
        currentBuckets[^1] = current.TokenTotal - currentKept;

        double floor = JensenShannon.NoDriftDistance(buckets, reference.Total, current.TokenTotal);
        if (current.TokenTotal == 0)
            return new TokenDrift(null, buckets, reference.Total, 0, floor, false, false);

        double distance = JensenShannon.Distance(referenceBuckets, currentBuckets);
        bool evaluated = floor <= thresholds.JsMaxNoiseFloorFraction * thresholds.JsDistance;
        return new TokenDrift(distance, buckets, reference.Total, current.TokenTotal, floor, evaluated, evaluated && distance > thresholds.JsDistance);
    }

    private EmbeddingDrift CompareEmbeddings(IReadOnlyList<float[]> reference, IReadOnlyList<float[]> window, DriftThresholds thresholds)
    {
        var current = DriftProfile.Subsample(window, _options.MaxEmbeddings, _options.Seed);
        bool evaluated = reference.Count >= thresholds.MinEmbeddings && current.Count >= thresholds.MinEmbeddings;
        if (!evaluated || current.Count < 2 || reference.Count < 2)
            return new EmbeddingDrift(null, null, null, reference.Count, current.Count, 0, false, false);
        if (current[0].Length != reference[0].Length)
            throw new ArgumentException($"Current embeddings have dimension {current[0].Length}, the reference {reference[0].Length}.");

        var test = MaximumMeanDiscrepancy.PermutationTest(reference, current, _options.MmdPermutations, _options.Seed);
        return new EmbeddingDrift(test.Mmd2, test.PValue, test.Bandwidth, reference.Count, current.Count, test.Permutations, true, test.PValue < thresholds.MmdPValue);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
