using TuneGateway.Training;

namespace TuneGateway.Controller.Pipelines;

/// <summary>Greedy completions for evaluation, from the gateway or an in-process engine.</summary>
public interface ICompletionClient
{
    /// <summary>The greedy completion of <paramref name="prompt"/> by <paramref name="model"/> (a concrete name such as bot@v3).</summary>
    Task<string> CompleteAsync(string model, string prompt, int maxTokens, CancellationToken cancellationToken);
}

/// <summary>How one model did on one set.</summary>
public sealed record AccuracyResult(string Model, string Set, int Examples, int Correct)
{
    public double Accuracy => Examples == 0 ? 0 : (double)Correct / Examples;
}

/// <summary>The offline gate's inputs and verdict.</summary>
public sealed record GateResult(bool Passed, string Reason, AccuracyResult CandidateHoldout, AccuracyResult? ProductionHoldout,
    AccuracyResult? CandidateGolden, AccuracyResult? ProductionGolden);

/// <summary>
/// Exact-match accuracy (whitespace-trimmed greedy completion equals the expected completion),
/// the task metric of the offline gate and of the demo.
/// </summary>
public static class Evaluator
{
    public static async Task<AccuracyResult> AccuracyAsync(ICompletionClient client, string model, string set, IReadOnlyList<TrainingExample> examples,
        int maxTokens, int parallelism, CancellationToken cancellationToken)
    {
        int correct = 0;
        await Parallel.ForEachAsync(examples, new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = cancellationToken }, async (example, ct) =>
        {
            string output = await client.CompleteAsync(model, example.Prompt, maxTokens, ct).ConfigureAwait(false);
            if (IsMatch(output, example.Completion)) Interlocked.Increment(ref correct);
        }).ConfigureAwait(false);
        return new AccuracyResult(model, set, examples.Count, correct);
    }

    public static bool IsMatch(string output, string expected) => string.Equals(output.Trim(), expected.Trim(), StringComparison.Ordinal);

    /// <summary>
    /// The candidate must beat production on the hold-out set by the configured margin and not
    /// lose more than the allowed amount on the golden set. Without a production version the
    /// hold-out comparison is against zero.
    /// </summary>
    public static async Task<GateResult> GateAsync(ICompletionClient client, string candidate, string? production, IReadOnlyList<TrainingExample> holdout,
        IReadOnlyList<TrainingExample> golden, EvaluationSettings settings, int parallelism, CancellationToken cancellationToken)
    {
        var heldOut = holdout.Take(settings.MaxExamples).ToArray();
        var candidateHoldout = await AccuracyAsync(client, candidate, "holdout", heldOut, settings.MaxTokens, parallelism, cancellationToken).ConfigureAwait(false);
        AccuracyResult? productionHoldout = production is null ? null
            : await AccuracyAsync(client, production, "holdout", heldOut, settings.MaxTokens, parallelism, cancellationToken).ConfigureAwait(false);
        AccuracyResult? candidateGolden = null, productionGolden = null;
        if (golden.Count > 0)
        {
            candidateGolden = await AccuracyAsync(client, candidate, "golden", golden, settings.MaxTokens, parallelism, cancellationToken).ConfigureAwait(false);
            if (production is not null)
                productionGolden = await AccuracyAsync(client, production, "golden", golden, settings.MaxTokens, parallelism, cancellationToken).ConfigureAwait(false);
        }

        double baseline = productionHoldout?.Accuracy ?? 0;
        double gain = candidateHoldout.Accuracy - baseline;
        if (heldOut.Length == 0)
            return new GateResult(false, "the hold-out set is empty", candidateHoldout, productionHoldout, candidateGolden, productionGolden);
        if (gain < settings.MinImprovement)
            return new GateResult(false, $"hold-out accuracy {candidateHoldout.Accuracy:P1} vs production {baseline:P1}: gain {gain:+0.0%;-0.0%} is below the required {settings.MinImprovement:P1}",
                candidateHoldout, productionHoldout, candidateGolden, productionGolden);
        if (candidateGolden is not null && productionGolden is not null && productionGolden.Accuracy - candidateGolden.Accuracy > settings.MaxGoldenRegression)
            return new GateResult(false, $"golden-set accuracy fell from {productionGolden.Accuracy:P1} to {candidateGolden.Accuracy:P1}, more than the allowed {settings.MaxGoldenRegression:P1}",
                candidateHoldout, productionHoldout, candidateGolden, productionGolden);
        return new GateResult(true, $"hold-out accuracy {candidateHoldout.Accuracy:P1} vs production {baseline:P1} (gain {gain:+0.0%;-0.0%})" +
            (candidateGolden is null ? "" : $"; golden {candidateGolden.Accuracy:P1}" + (productionGolden is null ? "" : $" vs {productionGolden.Accuracy:P1}")),
            candidateHoldout, productionHoldout, candidateGolden, productionGolden);
    }
}
