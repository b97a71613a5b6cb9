using System.Text.Json;
using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class DriftProfileTests
{
    [Fact]
    public void NumericSketchKeepsMidpointOrderStatistics()
    {
        double[] values = Enumerable.Range(1, 10000).Select(i => (double)(10001 - i)).ToArray(); // descending on purpose
        var sketch = NumericSketch.FromValues(values, 100);
        Assert.Equal(10000, sketch.Count);
        Assert.Equal(100, sketch.Values.Length);
        // Point i is the ⌊(i + ½)·n/k⌋-th (0-based) smallest: 50, 150, … → values 51, 151, …, 9951.
        Assert.Equal(Enumerable.Range(0, 100).Select(i => 51.0 + 100 * i), sketch.Values);

        var small = NumericSketch.FromValues([3.0, 1, 2], 100);
        Assert.Equal([1.0, 2, 3], small.Values);
    }

    [Fact]
    public void TokenSketchKeepsTheMostFrequentTokensAndLumpsTheRest()
    {
        var counts = new Dictionary<int, long> { [5] = 10, [9] = 30, [2] = 10, [7] = 1, [8] = 0 };
        var sketch = TokenSketch.FromCounts(counts, 2);
        Assert.Equal(51, sketch.Total);
        Assert.Equal(new Dictionary<int, long> { [9] = 30, [2] = 10 }, sketch.Counts); // tie 2 vs 5 goes to the smaller id
        Assert.Equal(11, sketch.OtherCount);
    }

    [Fact]
    public void WindowKeepsAUniformBoundedSampleOfEmbeddings()
    {
        var window = new DriftWindow(maxEmbeddings: 100, seed: 4);
        for (int i = 0; i < 10000; i++) window.AddEmbedding([i]);
        Assert.Equal(100, window.Embeddings.Count);
        Assert.Equal(10000, window.EmbeddingsSeen);
        // A uniform sample of 100 indices out of 0..9999 has mean 4999.5 ± 289 (sd): allow 3 sd.
        double mean = window.Embeddings.Average(e => e[0]);
        Assert.InRange(mean, 4999.5 - 870, 4999.5 + 870);
        Assert.Equal(100, window.Embeddings.Select(e => e[0]).Distinct().Count());
    }

    [Fact]
    public void ObservationsFeedFeaturesTokensAndEmbeddings()
    {
        var window = new DriftWindow();
        window.Add(new DriftObservation { PromptTokenIds = [1, 2, 2], CompletionLength = 7, LatencyMs = 120.5, MeanTokenLogprob = -0.4, Embedding = [1f, 2f] });
        window.Add(new DriftObservation { PromptTokenIds = [2], PromptLength = 4 });
        Assert.Equal([3.0, 4.0], window.Values(DriftFeatures.PromptLength));
        Assert.Equal([7.0], window.Values(DriftFeatures.CompletionLength));
        Assert.Empty(window.Values("unknown"));
        Assert.Equal(3, window.TokenCounts[2]);
        Assert.Equal(4, window.TokenTotal);
        Assert.Single(window.Embeddings);
        Assert.Throws<ArgumentOutOfRangeException>(() => window.AddNumeric(DriftFeatures.LatencyMs, double.NaN));
        Assert.Throws<ArgumentException>(() => window.AddEmbedding([1f, 2f, 3f]));
    }

    [Fact]
    public void ProfileRoundTripsThroughJsonAndComparesIdentically()
    {
        var traffic = new DriftTraffic();
        var reference = traffic.Window(new Random(1), 3000);
        var profile = DriftProfile.FromWindow(reference, new DriftProfileOptions { MaxNumericSamples = 500, MaxTokens = 300, MaxEmbeddings = 50 },
            new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero));
        Assert.Equal(4, profile.Numeric.Count);
        Assert.Equal(500, profile.Numeric[DriftFeatures.LatencyMs].Values.Length);
        Assert.Equal(3000, profile.Numeric[DriftFeatures.LatencyMs].Count);
        Assert.Equal(300, profile.Tokens!.Counts.Count);
        Assert.Equal(50, profile.Embeddings.Count);

        string json = profile.ToJson();
        Assert.Contains("\"numeric\":{", json, StringComparison.Ordinal);
        Assert.Contains("\"other_count\":", json, StringComparison.Ordinal);
        var restored = DriftProfile.FromJson(json);
        Assert.Equal(profile.CreatedAt, restored.CreatedAt);
        Assert.Equal(profile.Tokens.Total, restored.Tokens!.Total);
        Assert.Equal(profile.Tokens.Counts, restored.Tokens.Counts);
        Assert.Equal(profile.Numeric[DriftFeatures.PromptLength].Values, restored.Numeric[DriftFeatures.PromptLength].Values);
        Assert.Equal(profile.Embeddings[7], restored.Embeddings[7]);

        var detector = new DriftDetector(new DriftDetectorOptions { MmdPermutations = 100 });
        var current = traffic.Window(new Random(2), 400);
        Assert.Equal(JsonSerializer.Serialize(detector.Compare(profile, current)), JsonSerializer.Serialize(detector.Compare(restored, current)));
    }

    [Fact]
    public void FromJsonRejectsOtherVersionsAndInconsistentProfiles()
    {
        Assert.Throws<JsonException>(() => DriftProfile.FromJson("""{"version":2}"""));
        Assert.Throws<JsonException>(() => DriftProfile.FromJson("""{"version":1,"numeric":{"latency_ms":{"count":2,"values":[3,1]}}}"""));
        Assert.Throws<JsonException>(() => DriftProfile.FromJson("""{"version":1,"tokens":{"total":10,"counts":{"1":4},"other_count":5}}"""));
        var empty = DriftProfile.FromJson("""{"version":1}""");
        Assert.Empty(empty.Numeric);
        Assert.Null(empty.Tokens);
    }
}
