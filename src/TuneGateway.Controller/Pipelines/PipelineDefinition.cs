using System.Text.Json;
using System.Text.Json.Serialization;
using Quartz;
using TuneGateway.Controller.Statistics;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Training;

namespace TuneGateway.Controller.Pipelines;

/// <summary>When a pipeline runs.</summary>
public sealed record ScheduleSettings
{
    /// <summary>Quartz cron expression (seconds first), e.g. "0 0 3 * * ?" for 03:00 every day. Null: no schedule.</summary>
    public string? Cron { get; init; }
    /// <summary>IANA or Windows time zone id for the cron expression (default UTC).</summary>
    public string TimeZone { get; init; } = "UTC";
}

/// <summary>Events that start a run besides the schedule.</summary>
public sealed record TriggerSettings
{
    /// <summary>Start a run when drift is detected.</summary>
    public bool OnDrift { get; init; } = true;
    /// <summary>Start a run after this many new feedback items (0: off).</summary>
    public int FeedbackCount { get; init; }
    /// <summary>How often drift and feedback triggers are checked.</summary>
    public TimeSpan CheckInterval { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>Which logged traffic and feedback become training examples.</summary>
public sealed record DataRules
{
    /// <summary>How far back traffic is read.</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromDays(7);
    /// <summary>
    /// Read only traffic logged after the current production version was promoted (still within
    /// <see cref="Window"/>): feedback on what serves now, none from an earlier version or from the
    /// canary that decided the promotion.
    /// </summary>
    public bool SinceProduction { get; init; }
    /// <summary>Keep answers whose feedback score (-1..1) is at least this.</summary>
    public double MinScore { get; init; } = 0.5;
    /// <summary>A correction becomes an example (prompt → correction), whatever the rating.</summary>
    public bool UseCorrections { get; init; } = true;
    /// <summary>Keep answers without any feedback (usually off).</summary>
    public bool IncludeUnrated { get; init; }
    /// <summary>One example per normalised prompt (the newest correction wins).</summary>
    public bool Dedupe { get; init; } = true;
    public int MinPromptChars { get; init; } = 1;
    public int MaxPromptChars { get; init; } = 8000;
    public int MinCompletionChars { get; init; } = 1;
    public int MaxCompletionChars { get; init; } = 8000;
    /// <summary>Drop examples whose text holds redaction placeholders or personal data the redactor recognises.</summary>
    public bool PiiFilter { get; init; } = true;
    public int MaxExamples { get; init; } = 20000;
    /// <summary>Fewer curated examples than this: the run stops before training.</summary>
    public int MinExamples { get; init; } = 50;
    /// <summary>Add the production version's own training examples (lineage), so old skills are kept.</summary>
    public bool IncludeParentData { get; init; } = true;
}

/// <summary>How curated examples are divided (by a hash of the prompt, so an example stays in its part across runs).</summary>
public sealed record SplitSettings
{
    public double Validation { get; init; } = 0.1;
    public double Holdout { get; init; } = 0.1;
}

/// <summary>The offline gate a candidate must pass before any user sees it.</summary>
public sealed record EvaluationSettings
{
    /// <summary>The candidate's hold-out exact-match accuracy must exceed production's by at least this.</summary>
    public double MinImprovement { get; init; } = 0.02;
    /// <summary>A fixed JSON Lines set ({"prompt","completion"}) the candidate must not regress on.</summary>
    public string? GoldenSet { get; init; }
    /// <summary>Largest accepted drop of golden-set accuracy versus production.</summary>
    public double MaxGoldenRegression { get; init; }
    /// <summary>Tokens generated per evaluation prompt.</summary>
    public int MaxTokens { get; init; } = 32;
    /// <summary>At most this many hold-out examples are evaluated.</summary>
    public int MaxExamples { get; init; } = 200;
}

/// <summary>How a candidate meets real traffic.</summary>
public sealed record CanaryPlan
{
    /// <summary>Statistics of the A/B test: share, minimum samples, maximum duration, guardrails.</summary>
    public CanarySettings Settings { get; init; } = new();
    /// <summary>How often the canary is analysed.</summary>
    public TimeSpan CheckInterval { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>What happens when a canary wins.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PromotionPolicy>))]
public enum PromotionPolicy
{
    /// <summary>Promote at once.</summary>
    Auto,
    /// <summary>Wait for an operator's approval (the canary keeps running, guardrails stay armed).</summary>
    Approval,
}

/// <summary>
/// A retraining pipeline for one adapter name (the alias clients call): schedule and triggers,
/// data rules, split, training hyperparameters, evaluation gates, canary plan and promotion
/// policy. Set by MLOps through the API (<c>PUT /admin/pipelines/{adapter}</c>) or a config file.
/// </summary>
public sealed record PipelineDefinition
{
    public required string Adapter { get; init; }
    public ScheduleSettings Schedule { get; init; } = new();
    public TriggerSettings Triggers { get; init; } = new();
    public DataRules Data { get; init; } = new();
    public SplitSettings Split { get; init; } = new();
    public LoraTrainingOptions Training { get; init; } = new() { Epochs = 4, LearningRate = 5e-3, ValidationSplit = 0 };
    public EvaluationSettings Evaluation { get; init; } = new();
    public CanaryPlan Canary { get; init; } = new();
    public PromotionPolicy Promotion { get; init; } = PromotionPolicy.Approval;
    public DriftThresholds Drift { get; init; } = new();

    /// <summary>The lifecycle's JSON for pipelines, which the gateway's operator API serves too.</summary>
    public static readonly JsonSerializerOptions Json = LifecycleJson.Pipelines;

    public static PipelineDefinition Parse(string json) => FromJson(JsonDocument.Parse(json).RootElement);

    public static PipelineDefinition FromJson(JsonElement json)
    {
        PipelineDefinition? definition;
        try
        {
            definition = json.Deserialize<PipelineDefinition>(Json);
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"Invalid pipeline definition{(ex.Path is null ? "" : $" at {ex.Path}")}: {ex.Message}", ex);
        }
        if (definition is null) throw new ArgumentException("The pipeline definition is empty.");
        definition.Validate();
        return definition;
    }

    public JsonElement ToJson() => JsonSerializer.SerializeToElement(this, Json);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Adapter) || Adapter.Contains('@') || Adapter.Contains('/'))
            throw new ArgumentException("adapter: a name without '@' or '/' is required.");
        if (Schedule.Cron is { } cron && !CronExpression.TryParse(cron, out _))
            throw new ArgumentException($"schedule.cron: '{cron}' is not a valid Quartz cron expression (seconds minutes hours day-of-month month day-of-week [year]).");
        try { TimeZoneInfo.FindSystemTimeZoneById(Schedule.TimeZone); }
        catch (TimeZoneNotFoundException) { throw new ArgumentException($"schedule.time_zone: unknown time zone '{Schedule.TimeZone}'."); }
        if (Triggers.FeedbackCount < 0) throw new ArgumentException("triggers.feedback_count must not be negative.");
        if (Triggers.CheckInterval < TimeSpan.FromSeconds(1)) throw new ArgumentException("triggers.check_interval must be at least one second.");
        if (Data.MinScore is < -1 or > 1) throw new ArgumentException("data.min_score must be in [-1, 1].");
        if (Data.MinExamples < 1 || Data.MaxExamples < Data.MinExamples) throw new ArgumentException("data.min_examples must be at least 1 and at most data.max_examples.");
        if (Split.Validation is < 0 or >= 1 || Split.Holdout is <= 0 or >= 1 || Split.Validation + Split.Holdout >= 1)
            throw new ArgumentException("split: validation and holdout must be fractions that leave examples to train on (holdout > 0).");
        try { Training.Validate(); }
        catch (ArgumentException ex) { throw new ArgumentException($"training: {ex.Message}", ex); }
        if (Evaluation.MaxTokens < 1) throw new ArgumentException("evaluation.max_tokens must be at least 1.");
        try { Canary.Settings.Validate(); }
        catch (ArgumentException ex) { throw new ArgumentException($"canary.settings: {ex.Message}", ex); }
        if (Canary.CheckInterval < TimeSpan.FromSeconds(1)) throw new ArgumentException("canary.check_interval must be at least one second.");
    }
}
