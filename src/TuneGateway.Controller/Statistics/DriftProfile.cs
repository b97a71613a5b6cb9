using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Controller.Statistics;

/// <summary>How much of the reference a <see cref="DriftProfile"/> keeps.</summary>
public sealed record DriftProfileOptions
{
    /// <summary>Points kept per numeric feature (a quantile sketch beyond this).</summary>
    public int MaxNumericSamples { get; init; } = 2000;

    /// <summary>Most frequent tokens kept by id; the rest are lumped into one count.</summary>
    public int MaxTokens { get; init; } = 4096;

    /// <summary>Embeddings kept (a seeded uniform subsample beyond this).</summary>
    public int MaxEmbeddings { get; init; } = 200;

    /// <summary>Seed of the embedding subsample.</summary>
    public int Seed { get; init; }

    public void Validate()
    {
        if (MaxNumericSamples < 2) throw new ArgumentOutOfRangeException(nameof(MaxNumericSamples), MaxNumericSamples, "Keep at least 2 points.");
        if (MaxTokens < 1) throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "Keep at least 1 token.");
        if (MaxEmbeddings < 0) throw new ArgumentOutOfRangeException(nameof(MaxEmbeddings), MaxEmbeddings, "Must be non-negative.");
    }
}

/// <summary>
/// The reference distribution of one numeric feature: its full sample if small, otherwise the
/// order statistics at the midpoint quantiles (i + ½)/k, i = 0..k-1, of the full sample.
/// </summary>
/// <param name="Count">Observations the sketch summarises.</param>
/// <param name="Values">The kept points, sorted ascending (at most the configured maximum).</param>
/// <remarks>
/// The sketch is a deterministic, evenly spaced quantile summary: its empirical distribution
/// function is within 1/(2k) of the full sample's everywhere. PSI bins are cut on it directly.
/// The KS test treats it as a sample of size k; because the sketch tracks the reference
/// distribution more closely than k random draws would, this makes the test conservative (fewer
/// false alarms, slightly less power) rather than anti-conservative.
/// </remarks>
public sealed record NumericSketch(long Count, double[] Values)
{
    /// <summary>Sketch of <paramref name="values"/> keeping at most <paramref name="maxPoints"/> points.</summary>
    public static NumericSketch FromValues(IReadOnlyCollection<double> values, int maxPoints)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (maxPoints < 1) throw new ArgumentOutOfRangeException(nameof(maxPoints));
        double[] sorted = [.. values];
        foreach (double v in sorted)
        {
            if (!double.IsFinite(v)) throw new ArgumentException("Values must be finite.", nameof(values));
        }
        Array.Sort(sorted);
        if (sorted.Length <= maxPoints) return new NumericSketch(sorted.Length, sorted);

        var kept = new double[maxPoints];
        for (int i = 0; i < maxPoints; i++)
        {
            // Midpoint quantile (i + ½)/k: 0-based index ⌊(i + ½)·n/k⌋.
            long index = (2L * i + 1) * sorted.Length / (2L * maxPoints);
            kept[i] = sorted[index];
        }
        return new NumericSketch(sorted.Length, kept);
    }
}

/// <summary>The reference token histogram: counts of the most frequent tokens and of the rest together.</summary>
/// <param name="Total">All tokens counted.</param>
/// <param name="Counts">Token id → count for the kept (most frequent) tokens.</param>
/// <param name="OtherCount">Tokens not in <paramref name="Counts"/>.</param>
public sealed record TokenSketch(long Total, IReadOnlyDictionary<int, long> Counts, long OtherCount)
{
    /// <summary>The <paramref name="maxTokens"/> most frequent tokens (ties broken by smaller id) and the rest lumped.</summary>
    public static TokenSketch FromCounts(IReadOnlyDictionary<int, long> counts, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(counts);
        long total = 0;
        foreach (long c in counts.Values)
        {
            if (c < 0) throw new ArgumentException("Counts must be non-negative.", nameof(counts));
            total += c;
        }
        var kept = MostFrequent(counts, maxTokens).ToDictionary(kv => kv.Key, kv => kv.Value);
        return new TokenSketch(total, kept, total - kept.Values.Sum());
    }

    /// <summary>Up to <paramref name="count"/> entries with positive counts, most frequent first, ties by smaller id.</summary>
    public static IEnumerable<KeyValuePair<int, long>> MostFrequent(IReadOnlyDictionary<int, long> counts, int count)
        => counts.Where(kv => kv.Value > 0).OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key).Take(count);
}

/// <summary>
/// The reference sketch of an adapter's traffic, saved with its training data: numeric feature
/// sketches, the token histogram and an embedding sample. Build it with <see cref="FromWindow"/>,
/// store it with <see cref="ToJson"/>, compare a current window against it with <see cref="DriftDetector"/>.
/// </summary>
public sealed record DriftProfile
{
    public const int CurrentVersion = 1;

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = false,
    };

    /// <summary>Format version of the JSON form.</summary>
    public int Version { get; init; } = CurrentVersion;

    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Sketch per numeric feature name (see <see cref="DriftFeatures"/>).</summary>
    public IReadOnlyDictionary<string, NumericSketch> Numeric { get; init; } = new Dictionary<string, NumericSketch>();

    /// <summary>The token histogram, null if no prompt tokens were observed.</summary>
    public TokenSketch? Tokens { get; init; }

    /// <summary>A uniform sample of embeddings (empty if none were observed).</summary>
    public IReadOnlyList<float[]> Embeddings { get; init; } = [];

    /// <summary>Builds the profile of a reference window.</summary>
    public static DriftProfile FromWindow(DriftWindow reference, DriftProfileOptions? options = null, DateTimeOffset? createdAt = null)
    {
        ArgumentNullException.ThrowIfNull(reference);
        options ??= new DriftProfileOptions();
        options.Validate();

        var numeric = new Dictionary<string, NumericSketch>(StringComparer.Ordinal);
        foreach (string feature in reference.Features)
        {
            var values = reference.Values(feature);
            if (values.Count > 0) numeric[feature] = NumericSketch.FromValues([.. values], options.MaxNumericSamples);
        }

        TokenSketch? tokens = reference.TokenTotal > 0 ? TokenSketch.FromCounts(reference.TokenCounts, options.MaxTokens) : null;

        return new DriftProfile
        {
            CreatedAt = createdAt ?? DateTimeOffset.UtcNow,
            Numeric = numeric,
            Tokens = tokens,
            Embeddings = Subsample(reference.Embeddings, options.MaxEmbeddings, options.Seed),
        };
    }

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public static DriftProfile FromJson(string json)
    {
        var profile = JsonSerializer.Deserialize<DriftProfile>(json, JsonOptions) ?? throw new JsonException("The drift profile JSON is null.");
        if (profile.Version != CurrentVersion) throw new JsonException($"Drift profile version {profile.Version} is not supported (expected {CurrentVersion}).");
        profile.Check();
        return profile;
    }

    /// <summary>Throws if the profile is inconsistent (e.g. hand-edited JSON).</summary>
    public void Check()
    {
        ArgumentNullException.ThrowIfNull(Numeric);
        ArgumentNullException.ThrowIfNull(Embeddings);
        foreach (var (feature, sketch) in Numeric)
        {
            if (sketch?.Values is not { Length: > 0 } values) throw new JsonException($"Feature '{feature}' has no reference values.");
            for (int i = 0; i < values.Length; i++)
            {
                if (!double.IsFinite(values[i]) || (i > 0 && values[i] < values[i - 1])) throw new JsonException($"Feature '{feature}': reference values must be finite and sorted.");
            }
        }
        if (Tokens is { } t && (t.Counts is null || t.Total <= 0 || t.OtherCount < 0 || t.Counts.Values.Sum() + t.OtherCount != t.Total))
            throw new JsonException("The token sketch's counts do not add up to its total.");
        if (Embeddings.Count > 0 && Embeddings.Any(e => e is null || e.Length != Embeddings[0].Length))
            throw new JsonException("Reference embeddings must all have the same dimension.");
    }

    /// <summary>A seeded uniform subsample of at most <paramref name="max"/> items (partial Fisher–Yates), in their original order.</summary>
    internal static IReadOnlyList<float[]> Subsample(IReadOnlyList<float[]> items, int max, int seed)
    {
        if (items.Count <= max) return [.. items];
        int[] indices = Enumerable.Range(0, items.Count).ToArray();
        var random = new Random(seed);
        for (int i = 0; i < max; i++)
        {
            int j = i + random.Next(indices.Length - i);
            (indices[i], indices[j]) = (indices[j], indices[i]);
        }
        Array.Sort(indices, 0, max);
        return indices.Take(max).Select(i => items[i]).ToArray();
    }
}
