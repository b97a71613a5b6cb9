using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

/// <summary>
/// Synthetic gateway traffic for the drift tests: integer prompt and completion lengths (with ties
/// and a cap), a continuous mean log-probability and latency, Zipf-distributed prompt tokens over a
/// 5000-token vocabulary, and 8-dimensional Gaussian embeddings. Each knob shifts one aspect.
/// </summary>
internal sealed class DriftTraffic
{
    private static readonly double[] ZipfCumulative = BuildZipf(5000, 1.1);

    /// <summary>Multiplies every latency.</summary>
    public double LatencyFactor { get; init; } = 1;

    /// <summary>Fraction of prompt tokens replaced by ids the reference never uses.</summary>
    public double NewVocabularyFraction { get; init; }

    /// <summary>Added to every coordinate of the embeddings.</summary>
    public float EmbeddingShift { get; init; }

    public DriftWindow Window(Random random, int requests, int maxEmbeddings = DriftWindow.DefaultMaxEmbeddings)
    {
        var window = new DriftWindow(maxEmbeddings, random.Next());
        for (int i = 0; i < requests; i++) window.Add(Request(random));
        return window;
    }

    private DriftObservation Request(Random random)
    {
        int promptLength = Math.Max(1, (int)Math.Round(Math.Exp(3.3 + 0.5 * Sampling.Normal(random))));
        int completion = Math.Min(512, Math.Max(1, (int)Math.Round(Math.Exp(4.5 + 0.7 * Sampling.Normal(random)))));
        var tokens = new int[promptLength];
        for (int t = 0; t < promptLength; t++)
        {
            tokens[t] = random.NextDouble() < NewVocabularyFraction ? 10000 + random.Next(2000) : Zipf(random);
        }
        var embedding = new float[8];
        for (int d = 0; d < embedding.Length; d++) embedding[d] = (float)Sampling.Normal(random) + EmbeddingShift;
        return new DriftObservation
        {
            PromptTokenIds = tokens,
            CompletionLength = completion,
            MeanTokenLogprob = -Math.Exp(-0.5 + 0.4 * Sampling.Normal(random)),
            LatencyMs = LatencyFactor * (150 + 4.0 * completion + Math.Exp(4 + 0.5 * Sampling.Normal(random))),
            Embedding = embedding,
        };
    }

    private static int Zipf(Random random)
    {
        int k = Array.BinarySearch(ZipfCumulative, random.NextDouble());
        if (k < 0) k = ~k;
        return Math.Min(k, ZipfCumulative.Length - 1);
    }

    private static double[] BuildZipf(int vocabulary, double exponent)
    {
        var cumulative = new double[vocabulary];
        double total = 0;
        for (int k = 0; k < vocabulary; k++) total += Math.Pow(k + 1, -exponent);
        double running = 0;
        for (int k = 0; k < vocabulary; k++) cumulative[k] = running += Math.Pow(k + 1, -exponent) / total;
        return cumulative;
    }
}
