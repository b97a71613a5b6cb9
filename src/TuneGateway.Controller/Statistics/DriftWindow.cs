namespace TuneGateway.Controller.Statistics;

/// <summary>Names of the numeric features the gateway logs per request.</summary>
public static class DriftFeatures
{
    public const string PromptLength = "prompt_length";
    public const string CompletionLength = "completion_length";
    public const string MeanTokenLogprob = "mean_token_logprob";
    public const string LatencyMs = "latency_ms";
}

/// <summary>What one logged request contributes to drift detection; every part is optional.</summary>
public sealed record DriftObservation
{
    /// <summary>The prompt's token ids (feed the token histogram, and the prompt length if <see cref="PromptLength"/> is not set).</summary>
    public IReadOnlyList<int>? PromptTokenIds { get; init; }

    /// <summary>Prompt length in tokens; defaults to the number of <see cref="PromptTokenIds"/>.</summary>
    public int? PromptLength { get; init; }

    public int? CompletionLength { get; init; }
    public double? MeanTokenLogprob { get; init; }
    public double? LatencyMs { get; init; }

    /// <summary>A mean-pooled hidden state of the prompt.</summary>
    public float[]? Embedding { get; init; }
}

/// <summary>
/// Raw observations of one adapter over a period: numeric feature values, a token histogram and a
/// bounded uniform sample of embeddings. Both the reference (to build a <see cref="DriftProfile"/>)
/// and the current window are collected with it. Not thread-safe.
/// </summary>
/// <remarks>
/// Embeddings are kept by reservoir sampling (Vitter, "Random sampling with a reservoir", ACM TOMS
/// 1985, algorithm R) with a seeded generator, so memory stays bounded by
/// <see cref="MaxEmbeddings"/> vectors and the kept set is a uniform sample of all added ones.
/// Numeric values and token counts are kept in full.
/// </remarks>
public sealed class DriftWindow
{
    public const int DefaultMaxEmbeddings = 1000;

    private readonly Dictionary<string, List<double>> _numeric = new(StringComparer.Ordinal);
    private readonly Dictionary<int, long> _tokens = [];
    private readonly List<float[]> _embeddings = [];
    private readonly Random _random;
    private long _tokenTotal;
    private long _embeddingsSeen;
    private int _dimension = -1;

    public DriftWindow(int maxEmbeddings = DefaultMaxEmbeddings, int seed = 0)
    {
        if (maxEmbeddings < 0) throw new ArgumentOutOfRangeException(nameof(maxEmbeddings), maxEmbeddings, "Must be non-negative.");
        MaxEmbeddings = maxEmbeddings;
        _random = new Random(seed);
    }

    public int MaxEmbeddings { get; }

    /// <summary>The numeric features with at least one value.</summary>
    public IReadOnlyCollection<string> Features => _numeric.Keys;

    /// <summary>The values of a numeric feature in the order added (empty if none).</summary>
    public IReadOnlyList<double> Values(string feature) => _numeric.TryGetValue(feature, out var values) ? values : [];

    /// <summary>Token id → count over all added prompts.</summary>
    public IReadOnlyDictionary<int, long> TokenCounts => _tokens;

    public long TokenTotal => _tokenTotal;

    /// <summary>A uniform sample of at most <see cref="MaxEmbeddings"/> of the added embeddings.</summary>
    public IReadOnlyList<float[]> Embeddings => _embeddings;

    /// <summary>How many embeddings were added in total (kept or not).</summary>
    public long EmbeddingsSeen => _embeddingsSeen;

    /// <summary>Adds one request's observations.</summary>
    public void Add(DriftObservation observation)
    {
        ArgumentNullException.ThrowIfNull(observation);
        if (observation.PromptTokenIds is { } ids) AddTokens(ids);
        int? promptLength = observation.PromptLength ?? observation.PromptTokenIds?.Count;
        if (promptLength is { } p) AddNumeric(DriftFeatures.PromptLength, p);
        if (observation.CompletionLength is { } c) AddNumeric(DriftFeatures.CompletionLength, c);
        if (observation.MeanTokenLogprob is { } l) AddNumeric(DriftFeatures.MeanTokenLogprob, l);
        if (observation.LatencyMs is { } ms) AddNumeric(DriftFeatures.LatencyMs, ms);
        if (observation.Embedding is { } e) AddEmbedding(e);
    }

    /// <summary>Adds one value of a numeric feature (must be finite).</summary>
    public void AddNumeric(string feature, double value)
    {
        ArgumentException.ThrowIfNullOrEmpty(feature);
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, $"Feature '{feature}': values must be finite.");
        if (!_numeric.TryGetValue(feature, out var values))
        {
            values = [];
            _numeric[feature] = values;
        }
        values.Add(value);
    }

    /// <summary>Counts the tokens of one prompt.</summary>
    public void AddTokens(IEnumerable<int> tokenIds)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        foreach (int id in tokenIds)
        {
            _tokens[id] = _tokens.GetValueOrDefault(id) + 1;
            _tokenTotal++;
        }
    }

    /// <summary>Offers one embedding to the reservoir (all embeddings must have the same dimension).</summary>
    public void AddEmbedding(float[] embedding)
    {
        ArgumentNullException.ThrowIfNull(embedding);
        if (embedding.Length == 0) throw new ArgumentException("Embeddings must not be empty.", nameof(embedding));
        if (_dimension >= 0 && embedding.Length != _dimension) throw new ArgumentException($"Expected an embedding of dimension {_dimension}, got {embedding.Length}.", nameof(embedding));
        foreach (float v in embedding)
        {
            if (!float.IsFinite(v)) throw new ArgumentException("Embeddings must be finite.", nameof(embedding));
        }
        _dimension = embedding.Length;

        _embeddingsSeen++;
        if (MaxEmbeddings == 0) return;
        if (_embeddings.Count < MaxEmbeddings)
        {
            _embeddings.Add((float[])embedding.Clone());
            return;
        }
        long slot = _random.NextInt64(_embeddingsSeen);
        if (slot < MaxEmbeddings) _embeddings[(int)slot] = (float[])embedding.Clone();
    }
}
