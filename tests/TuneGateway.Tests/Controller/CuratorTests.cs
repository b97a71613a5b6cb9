using TuneGateway.Controller.Pipelines;
using TuneGateway.Storage;
using TuneGateway.Training;

namespace TuneGateway.Tests.Controller;

/// <summary>Curation rules on a fixed log (a fake reader: this is a unit test of the rules).</summary>
public class CuratorTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 23, 12, 0, 0, TimeSpan.Zero);

    private static int _sequence;

    private static TrafficRecord Record(string prompt, string completion, double? score = null, string? correction = null, int status = 200, double minutesAgo = 10)
    {
        int n = Interlocked.Increment(ref _sequence);
        var at = Now.AddMinutes(-minutesAgo);
        var entry = new TrafficEntry { Id = $"cmpl-{n}", Timestamp = at, Adapter = "bot", Prompt = prompt, Completion = completion, Status = status, LatencyMs = 5 };
        Feedback? feedback = score is null && correction is null ? null : new Feedback
        {
            Id = entry.Id, Adapter = "bot", Rating = score > 0 ? 1 : -1, Scale = RatingScale.Thumbs, Score = score ?? -1, Correction = correction,
            CreatedAt = at, UpdatedAt = at,
        };
        return new TrafficRecord(new LogPosition(at.ToUnixTimeMilliseconds(), n), entry, feedback);
    }

    private static PipelineDefinition Pipeline(DataRules? rules = null) => new()
    {
        Adapter = "bot",
        Data = rules ?? new DataRules { MinExamples = 1 },
        Split = new SplitSettings { Validation = 0.1, Holdout = 0.2 },
    };

    [Fact]
    public async Task CorrectionsAndWellRatedAnswersBecomeExamplesAndTheRestIsCounted()
    {
        var log = new[]
        {
            Record("ticket: my invoice", " shipping", score: -1, correction: " billing"),
            Record("ticket: my parcel", " shipping", score: 1),
            Record("ticket: my login", " billing", score: -1),
            Record("ticket: my email", " account"),
            Record("ticket: my card 4111 1111 1111 1111", " billing", score: 1),
            Record("ticket: broken", " x", status: 500, score: 1),
            Record("ticket: long ago", " billing", score: 1, minutesAgo: 60 * 24 * 30),
        };
        var data = await new Curator(new InMemoryTrafficReader(log), new Redactor(new RedactionOptions())).CurateAsync(Pipeline(), [], Now);

        var all = data.Train.Concat(data.Validation).Concat(data.Holdout).ToList();
        Assert.Equal(2, all.Count);
        Assert.Contains(new TrainingExample("ticket: my invoice", " billing"), all);
        Assert.Contains(new TrainingExample("ticket: my parcel", " shipping"), all);
        Assert.Equal(6, data.Stats.Read);
        Assert.Equal(1, data.Stats.Corrections);
        Assert.Equal(1, data.Stats.DroppedLowScore);
        Assert.Equal(1, data.Stats.DroppedUnrated);
        Assert.Equal(1, data.Stats.DroppedPii);
    }

    [Fact]
    public async Task DuplicatesKeepTheNewestCorrectionAndParentDataFillsIn()
    {
        var log = new[]
        {
            Record("ticket:  my   RENEWAL", " billing", score: -1, correction: " shipping", minutesAgo: 30),
            Record("ticket: my renewal", " billing", score: -1, correction: " billing", minutesAgo: 20),
            Record("ticket: my renewal", " billing", score: 1, minutesAgo: 10),
        };
        TrainingExample[] parent = [new("ticket: my renewal", " shipping"), new("ticket: my package", " shipping")];
        var data = await new Curator(new InMemoryTrafficReader(log)).CurateAsync(Pipeline(), parent, Now);
        var all = data.Train.Concat(data.Validation).Concat(data.Holdout).ToList();

        Assert.Equal(2, data.Stats.Duplicates);
        Assert.Equal(1, data.Stats.FromParent);
        Assert.Contains(new TrainingExample("ticket: my renewal", " billing"), all);
        Assert.Contains(new TrainingExample("ticket: my package", " shipping"), all);
        Assert.Equal(2, all.Count);
    }

    [Fact]
    public async Task TheSplitIsStableAcrossRuns()
    {
        var log = Enumerable.Range(0, 300).Select(i => Record($"ticket: number {i}", " billing", score: 1)).ToArray();
        var curator = new Curator(new InMemoryTrafficReader(log, pageSize: 1000));
        var first = await curator.CurateAsync(Pipeline(), [], Now);
        var second = await curator.CurateAsync(Pipeline(), [], Now);
        Assert.Equal(first.Holdout, second.Holdout);
        // 20 % hold-out, 10 % validation, within sampling noise of 300 hashes.
        Assert.InRange(first.Holdout.Count, 35, 85);
        Assert.InRange(first.Validation.Count, 12, 50);
        Assert.Empty(first.Holdout.Intersect(first.Train));
    }
}

/// <summary>The offline gate's rules with a scripted model (unit test).</summary>
public class EvaluatorTests
{
    private sealed class ScriptedModels(Dictionary<string, Func<string, string>> models) : ICompletionClient
    {
        public Task<string> CompleteAsync(string model, string prompt, int maxTokens, CancellationToken cancellationToken) =>
            Task.FromResult(models[model](prompt));
    }

    private static readonly TrainingExample[] Holdout = Enumerable.Range(0, 20).Select(i => new TrainingExample($"q{i}", $" a{i}")).ToArray();
    private static readonly TrainingExample[] Golden = Enumerable.Range(0, 10).Select(i => new TrainingExample($"g{i}", $" b{i}")).ToArray();

    private static Func<string, string> RightOn(int percent) => prompt =>
    {
        int n = int.Parse(prompt[1..]);
        string expected = prompt[0] == 'q' ? $" a{n}" : $" b{n}";
        return n * 100 / (prompt[0] == 'q' ? 20 : 10) < percent ? expected : " wrong";
    };

    [Fact]
    public async Task ABetterCandidatePassesAndARegressionOnTheGoldenSetFails()
    {
        var settings = new EvaluationSettings { MinImprovement = 0.1 };
        var client = new ScriptedModels(new() { ["bot@v1"] = RightOn(30), ["bot@v2"] = RightOn(80), ["bot@v3"] = prompt => prompt[0] == 'q' ? RightOn(100)(prompt) : " wrong" });

        var better = await Evaluator.GateAsync(client, "bot@v2", "bot@v1", Holdout, Golden, settings, 4, CancellationToken.None);
        Assert.True(better.Passed, better.Reason);
        Assert.Equal(0.8, better.CandidateHoldout.Accuracy, 3);
        Assert.Equal(0.3, better.ProductionHoldout!.Accuracy, 3);

        var regresses = await Evaluator.GateAsync(client, "bot@v3", "bot@v1", Holdout, Golden, settings, 4, CancellationToken.None);
        Assert.False(regresses.Passed);
        Assert.Contains("golden-set accuracy fell", regresses.Reason);

        var notEnough = await Evaluator.GateAsync(client, "bot@v1", "bot@v2", Holdout, [], settings, 4, CancellationToken.None);
        Assert.False(notEnough.Passed);
        Assert.Contains("below the required", notEnough.Reason);
    }
}
