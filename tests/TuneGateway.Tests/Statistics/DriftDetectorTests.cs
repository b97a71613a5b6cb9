using System.Text.Json;
using TuneGateway.Controller.Statistics;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Statistics;

public class DriftDetectorTests(ITestOutputHelper output)
{
    private const int WindowSize = 300;

    /// <summary>Small embedding samples keep the 200-window test fast: 60 reference, 40 current, 100 permutations.</summary>
    private static readonly DriftDetectorOptions Options = new() { MmdPermutations = 100, MaxEmbeddings = 40 };
    private static readonly DriftProfileOptions ProfileOptions = new() { MaxEmbeddings = 60 };

    private static readonly Lazy<DriftProfile> Reference = new(() =>
        DriftProfile.FromWindow(new DriftTraffic().Window(new Random(100), 10000), ProfileOptions));

    [Fact]
    public void FalseAlarmRateOverWindowsFromTheReferenceDistributionStaysWithinTheUnionBound()
    {
        // Per window, under no drift: each of the 4 KS checks alarms with probability ≤ 0.01 (exact or
        // conservative p-values), MMD ≤ 0.01 (exact permutation test), PSI with probability ≈
        // P(χ²₉ > 0.2·300) < 1e-8 and JS essentially never (its noise floor here is ≈ 0.035, under half
        // of 0.1). Union bound: P(any alarm) ≤ 0.05. Over 200 windows the count of alarming windows
        // is then at most Binomial(200, 0.05): mean 10, sd 3.1; allow 10 + 3 sd = 19. Per check
        // Binomial(200, 0.01): mean 2, sd 1.4; allow 6. PSI and JS: none.
        var detector = new DriftDetector(Options);
        var traffic = new DriftTraffic();
        var random = new Random(200);
        const int windows = 200;
        int anyAlarm = 0, psi = 0, js = 0, mmd = 0;
        var ks = new Dictionary<string, int>();
        for (int w = 0; w < windows; w++)
        {
            var report = detector.Compare(Reference.Value, traffic.Window(random, WindowSize, maxEmbeddings: 40));
            Assert.All(report.Numeric, n => Assert.True(n.Evaluated));
            Assert.True(report.Tokens!.Evaluated && report.Embeddings!.Evaluated);
            if (report.DriftDetected) anyAlarm++;
            psi += report.Numeric.Count(n => n.PsiAlarm);
            foreach (var n in report.Numeric.Where(n => n.KsAlarm)) ks[n.Feature] = ks.GetValueOrDefault(n.Feature) + 1;
            if (report.Tokens.Alarm) js++;
            if (report.Embeddings.Alarm) mmd++;
        }

        output.WriteLine($"False alarms over {windows} windows of {WindowSize}: any {anyAlarm} ({anyAlarm / (double)windows:P1}), "
            + $"KS {string.Join(", ", DriftFeatureNames.Select(f => $"{f} {ks.GetValueOrDefault(f)}"))}, PSI {psi}, JS {js}, MMD {mmd}");
        Assert.InRange(anyAlarm, 0, 19);
        Assert.All(DriftFeatureNames, f => Assert.InRange(ks.GetValueOrDefault(f), 0, 6));
        Assert.InRange(mmd, 0, 6);
        Assert.Equal(0, psi);
        Assert.Equal(0, js);
    }

    [Fact]
    public void ALatencyShiftCrossesPsiAndKsOnLatencyOnly()
    {
        var report = Compare(new DriftTraffic { LatencyFactor = 1.3 }, seed: 301);
        var latency = report.Numeric.Single(n => n.Feature == DriftFeatures.LatencyMs);
        output.WriteLine($"latency ×1.3: PSI {latency.Psi:G3}, KS D {latency.KsStatistic:G3} p {latency.KsPValue:G3}");
        Assert.True(latency.PsiAlarm && latency.KsAlarm);
        Assert.Contains(report.Alarms, a => a.StartsWith("psi latency_ms", StringComparison.Ordinal));
        Assert.Contains(report.Alarms, a => a.StartsWith("ks latency_ms", StringComparison.Ordinal));
        Assert.False(report.Tokens!.Alarm);
    }

    [Fact]
    public void ANewVocabularyCrossesTheJensenShannonThreshold()
    {
        var report = Compare(new DriftTraffic { NewVocabularyFraction = 0.3 }, seed: 302);
        output.WriteLine($"30% new vocabulary: JS {report.Tokens!.JsDistance:G3} (noise floor {report.Tokens.NoiseFloor:G3})");
        Assert.True(report.Tokens.Alarm);
        Assert.Contains(report.Alarms, a => a.StartsWith("js tokens", StringComparison.Ordinal));
        Assert.DoesNotContain(report.Numeric, n => n.PsiAlarm);
    }

    [Fact]
    public void ShiftedEmbeddingsCrossTheMmdThreshold()
    {
        var report = Compare(new DriftTraffic { EmbeddingShift = 0.5f }, seed: 303);
        output.WriteLine($"embeddings +0.5: MMD² {report.Embeddings!.Mmd2:G3}, p {report.Embeddings.PValue:G3}");
        Assert.True(report.Embeddings.Alarm);
        Assert.Equal(1.0 / 101, report.Embeddings.PValue);
        Assert.False(report.Tokens!.Alarm);
    }

    [Fact]
    public void SmallWindowsAreReportedButDoNotAlarm()
    {
        var window = new DriftTraffic { LatencyFactor = 2 }.Window(new Random(304), 50, maxEmbeddings: 10);
        var report = new DriftDetector(Options).Compare(Reference.Value, window);
        var latency = report.Numeric.Single(n => n.Feature == DriftFeatures.LatencyMs);
        Assert.False(latency.Evaluated);
        Assert.True(latency.Psi > 0.2 && latency.KsPValue < 0.01); // computed and shown ...
        Assert.False(latency.PsiAlarm || latency.KsAlarm);        // ... but below the minimum size
        Assert.False(report.Embeddings!.Evaluated);
        Assert.Null(report.Embeddings.PValue);
        Assert.False(report.Tokens!.Evaluated);                  // ~1 300 tokens: noise floor above 0.05
        Assert.False(report.DriftDetected);
    }

    [Fact]
    public void MissingCurrentDataIsReportedAsNotEvaluated()
    {
        var report = new DriftDetector(Options).Compare(Reference.Value, new DriftWindow());
        Assert.All(report.Numeric, n => Assert.Null(n.Psi));
        Assert.Null(report.Tokens!.JsDistance);
        Assert.Equal(1, report.Tokens.NoiseFloor);
        Assert.False(report.DriftDetected);
        // The dashboard gets it as JSON: no NaN or infinity anywhere.
        Assert.Contains("\"DriftDetected\":false", JsonSerializer.Serialize(report), StringComparison.Ordinal);
    }

    [Fact]
    public void PerAdapterThresholdsOverrideTheDefaults()
    {
        var detector = new DriftDetector(Options);
        var window = new DriftTraffic { LatencyFactor = 1.1 }.Window(new Random(305), WindowSize, maxEmbeddings: 40);
        var latency = detector.Compare(Reference.Value, window).Numeric.Single(n => n.Feature == DriftFeatures.LatencyMs);
        double psi = latency.Psi!.Value;
        double p = latency.KsPValue!.Value;

        // Thresholds on either side of the observed statistics flip the verdicts, nothing else changes.
        var strict = detector.Compare(Reference.Value, window, new DriftThresholds { Psi = psi / 2, KsPValue = Math.Min(0.5, p * 2) });
        var lenient = detector.Compare(Reference.Value, window, new DriftThresholds { Psi = psi * 2, KsPValue = p / 2 });
        var latencyStrict = strict.Numeric.Single(n => n.Feature == DriftFeatures.LatencyMs);
        var latencyLenient = lenient.Numeric.Single(n => n.Feature == DriftFeatures.LatencyMs);
        Assert.Equal(psi, latencyStrict.Psi);
        Assert.Equal(psi, latencyLenient.Psi);
        Assert.True(latencyStrict.PsiAlarm && latencyStrict.KsAlarm);
        Assert.False(latencyLenient.PsiAlarm || latencyLenient.KsAlarm);
        Assert.Equal(psi * 2, lenient.Thresholds.Psi);
        Assert.Throws<ArgumentOutOfRangeException>(() => detector.Compare(Reference.Value, window, new DriftThresholds { MmdPValue = 0.005 }));
    }

    [Fact]
    public void OptionsThatCouldNeverAlarmAreRejected()
    {
        // 50 permutations: the smallest p-value is 1/51 ≈ 0.02, never below 0.01.
        Assert.Throws<ArgumentOutOfRangeException>(() => new DriftDetector(new DriftDetectorOptions { MmdPermutations = 50 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DriftDetector(new DriftDetectorOptions { Thresholds = new DriftThresholds { Psi = 0 } }));
    }

    private static readonly string[] DriftFeatureNames = [DriftFeatures.CompletionLength, DriftFeatures.LatencyMs, DriftFeatures.MeanTokenLogprob, DriftFeatures.PromptLength];

    private static DriftReport Compare(DriftTraffic traffic, int seed)
        => new DriftDetector(Options).Compare(Reference.Value, traffic.Window(new Random(seed), WindowSize, maxEmbeddings: 40));
}
