using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TuneGateway.Storage;
using TuneGateway.Training;

namespace TuneGateway.Controller.Pipelines;

/// <summary>Counts of what curation kept and dropped, for the job history and the dashboard.</summary>
public sealed record CurationStats
{
    public int Read { get; init; }
    public int WithFeedback { get; init; }
    public int Corrections { get; init; }
    public int DroppedLowScore { get; init; }
    public int DroppedUnrated { get; init; }
    public int DroppedLength { get; init; }
    public int DroppedPii { get; init; }
    public int Duplicates { get; init; }
    public int FromParent { get; init; }
    public int Train { get; init; }
    public int Validation { get; init; }
    public int Holdout { get; init; }
}

/// <summary>Examples split for training, validation (early stopping) and the offline gate.</summary>
public sealed record CuratedDataset(IReadOnlyList<TrainingExample> Train, IReadOnlyList<TrainingExample> Validation,
    IReadOnlyList<TrainingExample> Holdout, CurationStats Stats)
{
    public int Count => Train.Count + Validation.Count + Holdout.Count;
}

/// <summary>
/// Turns logged traffic and feedback into training examples by a pipeline's data rules:
/// corrections become (prompt → correction), well-rated answers (prompt → answer); length
/// bounds, a personal-data filter and de-duplication apply; the parent version's examples can be
/// added back; and every example is put in train, validation or hold-out by a hash of its prompt,
/// so the same prompt lands in the same part in every run (the hold-out set stays unseen).
/// </summary>
public sealed class Curator(ITrafficReader traffic, Redactor? piiDetector = null)
{
    /// <param name="productionSince">When the production version was promoted, for <see cref="DataRules.SinceProduction"/>.</param>
    public async Task<CuratedDataset> CurateAsync(PipelineDefinition pipeline, IReadOnlyList<TrainingExample> parentExamples,
        DateTimeOffset now, CancellationToken cancellationToken = default, DateTimeOffset? productionSince = null)
    {
        var rules = pipeline.Data;
        var since = now - rules.Window;
        if (rules.SinceProduction && productionSince > since) since = productionSince.Value;
        int read = 0, withFeedback = 0, corrections = 0, lowScore = 0, unrated = 0, length = 0, pii = 0;
        // Newest first wins on duplicates: read oldest to newest and overwrite.
        var byPrompt = new Dictionary<string, (TrainingExample Example, bool Correction)>(StringComparer.Ordinal);
        var all = new List<TrainingExample>();
        int duplicates = 0;

        string? cursor = null;
        do
        {
            var page = await traffic.QueryAsync(new TrafficQuery
            {
                Adapter = pipeline.Adapter,
                Since = since,
                Until = now,
                Limit = TrafficQuery.MaxLimit,
                Cursor = cursor,
                IncludeFeedback = true,
            }, cancellationToken).ConfigureAwait(false);
            foreach (var record in page.Items)
            {
                read++;
                var entry = record.Entry;
                if (entry.Status is < 200 or >= 300 || entry.Prompt is null) continue;
                var feedback = record.Feedback;
                string? completion;
                bool isCorrection = false;
                if (feedback is not null)
                {
                    withFeedback++;
                    if (rules.UseCorrections && !string.IsNullOrEmpty(feedback.Correction))
                    {
                        completion = feedback.Correction;
                        isCorrection = true;
                        corrections++;
                    }
                    else if (feedback.Score >= rules.MinScore)
                    {
                        completion = entry.Completion;
                    }
                    else
                    {
                        lowScore++;
                        continue;
                    }
                }
                else if (rules.IncludeUnrated)
                {
                    completion = entry.Completion;
                }
                else
                {
                    unrated++;
                    continue;
                }

                if (completion is null || !WithinBounds(entry.Prompt, completion, rules)) { length++; continue; }
                if (rules.PiiFilter && (ContainsPii(entry.Prompt) || ContainsPii(completion))) { pii++; continue; }
                var example = new TrainingExample(entry.Prompt, completion);
                if (!rules.Dedupe) { all.Add(example); continue; }
                string key = Normalize(entry.Prompt);
                if (byPrompt.TryGetValue(key, out var existing))
                {
                    duplicates++;
                    // A correction is never replaced by a mere rating; otherwise the newest wins.
                    if (existing.Correction && !isCorrection) continue;
                }
                byPrompt[key] = (example, isCorrection);
            }
            cursor = page.NextCursor;
        }
        while (cursor is not null && byPrompt.Count + all.Count < rules.MaxExamples);

        var curated = rules.Dedupe ? byPrompt.Values.Select(v => v.Example).ToList() : all;
        int fromParent = 0;
        if (rules.IncludeParentData)
        {
            var seen = curated.Select(e => Normalize(e.Prompt)).ToHashSet(StringComparer.Ordinal);
            foreach (var example in parentExamples)
            {
                if (curated.Count >= rules.MaxExamples) break;
                if (rules.Dedupe && !seen.Add(Normalize(example.Prompt))) continue;
                curated.Add(example);
                fromParent++;
            }
        }
        if (curated.Count > rules.MaxExamples) curated = curated.Take(rules.MaxExamples).ToList();

        var train = new List<TrainingExample>();
        var validation = new List<TrainingExample>();
        var holdout = new List<TrainingExample>();
        foreach (var example in curated)
        {
            double bucket = Bucket(example.Prompt);
            if (bucket < pipeline.Split.Holdout) holdout.Add(example);
            else if (bucket < pipeline.Split.Holdout + pipeline.Split.Validation) validation.Add(example);
            else train.Add(example);
        }

        return new CuratedDataset(train, validation, holdout, new CurationStats
        {
            Read = read,
            WithFeedback = withFeedback,
            Corrections = corrections,
            DroppedLowScore = lowScore,
            DroppedUnrated = unrated,
            DroppedLength = length,
            DroppedPii = pii,
            Duplicates = duplicates,
            FromParent = fromParent,
            Train = train.Count,
            Validation = validation.Count,
            Holdout = holdout.Count,
        });
    }

    private static bool WithinBounds(string prompt, string completion, DataRules rules) =>
        prompt.Length >= rules.MinPromptChars && prompt.Length <= rules.MaxPromptChars &&
        completion.Length >= rules.MinCompletionChars && completion.Length <= rules.MaxCompletionChars;

    private bool ContainsPii(string text)
    {
        if (text.Contains(Redactor.EmailPlaceholder, StringComparison.Ordinal) || text.Contains(Redactor.PhonePlaceholder, StringComparison.Ordinal) ||
            text.Contains(Redactor.CardPlaceholder, StringComparison.Ordinal) || text.Contains(Redactor.FailedPlaceholder, StringComparison.Ordinal))
            return true;
        return piiDetector is { IsEnabled: true } && piiDetector.Redact(text) != text;
    }

    private static string Normalize(string prompt) => string.Join(' ', prompt.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)).ToLowerInvariant();

    /// <summary>A stable number in [0, 1) from the normalised prompt.</summary>
    internal static double Bucket(string prompt)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(Normalize(prompt)), hash);
        return BitConverter.ToUInt64(hash) / (double)ulong.MaxValue * (1 - 1e-12);
    }

    /// <summary>Writes examples as JSON Lines (the format `tunegw train` reads).</summary>
    public static void WriteJsonLines(string path, IEnumerable<TrainingExample> examples)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        string temporary = path + ".tmp";
        using (var writer = new StreamWriter(temporary, false, new UTF8Encoding(false)))
        {
            foreach (var e in examples)
                writer.WriteLine(JsonSerializer.Serialize(new Dictionary<string, string> { ["prompt"] = e.Prompt, ["completion"] = e.Completion }));
        }
        File.Move(temporary, path, overwrite: true);
    }

    public static IReadOnlyList<TrainingExample> ReadJsonLines(string path)
    {
        if (!File.Exists(path)) return [];
        return File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l)).Select(l =>
        {
            using var doc = JsonDocument.Parse(l);
            return new TrainingExample(doc.RootElement.GetProperty("prompt").GetString() ?? "", doc.RootElement.GetProperty("completion").GetString() ?? "");
        }).ToArray();
    }
}
