using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Storage.Lifecycle;

/// <summary>Where a version of an adapter is in its life.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<VersionState>))]
public enum VersionState
{
    /// <summary>Trained, waiting for (or failing) evaluation.</summary>
    Candidate,
    /// <summary>Receiving a share of traffic in an A/B test against production.</summary>
    Canary,
    /// <summary>Serving the alias.</summary>
    Production,
    /// <summary>Was production, replaced by a newer version.</summary>
    Retired,
    /// <summary>Stopped by the offline gate, an operator, or a failed step.</summary>
    Rejected,
    /// <summary>Stopped while in canary (guardrail, worse results) or after promotion by an operator.</summary>
    RolledBack,
}

/// <summary>
/// The legal moves of a version's state, the one table both stores check on every transition:
/// a version enters as <see cref="VersionState.Candidate"/> (registration) and moves only along
/// these edges. <see cref="VersionState.Rejected"/> is final.
/// </summary>
public static class VersionTransitions
{
    /// <summary>For each target state, the states a version may reach it from.</summary>
    public static readonly IReadOnlyDictionary<VersionState, IReadOnlySet<VersionState>> LegalFrom = new Dictionary<VersionState, IReadOnlySet<VersionState>>
    {
        // Candidate is entered by registration only.
        [VersionState.Candidate] = new HashSet<VersionState>(),
        [VersionState.Canary] = new HashSet<VersionState> { VersionState.Candidate },
        // Promotion from a candidate (first version, approval), a won canary, or back to an older version (rollback, re-promotion).
        [VersionState.Production] = new HashSet<VersionState> { VersionState.Candidate, VersionState.Canary, VersionState.Retired, VersionState.RolledBack },
        [VersionState.Retired] = new HashSet<VersionState> { VersionState.Production },
        [VersionState.Rejected] = new HashSet<VersionState> { VersionState.Candidate, VersionState.Canary },
        [VersionState.RolledBack] = new HashSet<VersionState> { VersionState.Canary, VersionState.Production },
    };

    public static bool IsLegal(VersionState from, VersionState to) => LegalFrom[to].Contains(from);

    /// <summary>
    /// The states a transition to <paramref name="to"/> may start from: the table's, narrowed to
    /// <paramref name="expectedFrom"/> when the caller compares-and-sets against what it read.
    /// </summary>
    public static IReadOnlyCollection<VersionState> Allowed(VersionState to, IReadOnlyCollection<VersionState>? expectedFrom) =>
        expectedFrom is null ? [.. LegalFrom[to]] : [.. expectedFrom.Where(LegalFrom[to].Contains)];
}

/// <summary>
/// One version of a named adapter with its lineage: where its weights are, what it was trained
/// from and how, and how it evaluated. The concrete model name served by workers is
/// <c>{Adapter}@{Version}</c>.
/// </summary>
public sealed record RegisteredVersion
{
    public required string Adapter { get; init; }
    public required string Version { get; init; }
    public VersionState State { get; init; } = VersionState.Candidate;
    /// <summary>Directory holding adapter_config.json and adapter_model.safetensors.</summary>
    public required string ArtifactPath { get; init; }
    /// <summary>SHA-256 (hex) of adapter_model.safetensors, verified before serving.</summary>
    public required string Sha256 { get; init; }
    public string? ParentVersion { get; init; }
    public string? DatasetId { get; init; }
    public string? DatasetSha256 { get; init; }
    public required string BaseModel { get; init; }
    public string? BaseModelSha256 { get; init; }
    public JsonElement? TrainingConfig { get; init; }
    public JsonElement? TrainingReport { get; init; }
    public JsonElement? Evaluation { get; init; }
    public string? StateReason { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }

    [JsonIgnore] public string ModelName => $"{Adapter}@{Version}";
}

/// <summary>One entry of the audit trail: who did what to which adapter or version, when and why.</summary>
public sealed record AuditEvent
{
    /// <summary>Assigned by the store, increasing.</summary>
    public long Sequence { get; init; }
    public DateTimeOffset At { get; init; }
    public required string Actor { get; init; }
    /// <summary>e.g. "register", "transition", "alias.set", "approval.resolve", "pipeline.update", "pipeline.pause".</summary>
    public required string Action { get; init; }
    public required string Adapter { get; init; }
    public string? Version { get; init; }
    public string? From { get; init; }
    public string? To { get; init; }
    public string? Reason { get; init; }
    public JsonElement? Details { get; init; }
}

/// <summary>A transition was refused because the version was not in an expected state (a concurrent change won).</summary>
public sealed class StateConflictException(string message) : Exception(message);

/// <summary>One arm of an alias: a concrete version and its share of the alias's traffic.</summary>
public sealed record AliasArm(string Model, double Weight, string Arm);

/// <summary>
/// What a client-facing name resolves to: weighted arms (weights sum to 1), e.g.
/// support-bot → support-bot@v3 0.9 (control), support-bot@v4 0.1 (candidate).
/// </summary>
public sealed record AliasRoute
{
    public required string Alias { get; init; }
    public required IReadOnlyList<AliasArm> Arms { get; init; }
    /// <summary>The base model the arms are adapters of, when an operator said so (routing prefers its workers).</summary>
    public string? BaseModel { get; init; }
    /// <summary>Increases with every change; SetAsync can require the revision it read.</summary>
    public long Revision { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
    public string? UpdatedBy { get; init; }
}

/// <summary>
/// The canary in progress for an adapter: which candidate gets what share of the alias against
/// which control version, since when, and what the controller concluded at its last look. Who is
/// in canary is the lifecycle's; <see cref="Analysis"/> and <see cref="LastVerdict"/> are the
/// controller's statistics (its sequential tests' state and last verdict), kept as the JSON it
/// wrote: the lifecycle stores and shows them, never interprets them, so it needs no statistics.
/// </summary>
public sealed record CanaryState
{
    public required string Candidate { get; init; }
    public required string Control { get; init; }
    public required double Share { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public string? RunId { get; init; }
    /// <summary>The sequential tests' state between checks (null: not analysed yet).</summary>
    public JsonElement? Analysis { get; init; }
    /// <summary>Set when the canary won and an operator's approval was requested.</summary>
    public string? ApprovalId { get; init; }
    public JsonElement? LastVerdict { get; init; }
    /// <summary>When the monitor last judged it (null: not yet); the next check is due a check interval later.</summary>
    public DateTimeOffset? CheckedAt { get; init; }
    /// <summary>
    /// Assigned by the store with every write (0: not written through the canary store yet);
    /// kept beside the record, not in its JSON, so the record reads as it always did.
    /// </summary>
    [JsonIgnore] public long Revision { get; init; }

    /// <summary>
    /// Where canaries were kept before the canary store: the pipeline's state under this key, as
    /// the same JSON. A canary can run for days across an upgrade, so both stores read one found
    /// there (as revision 0) when they hold none of their own, and their next write of that
    /// adapter's canary (put or clear) removes it: the fallback empties itself as canaries are checked.
    /// </summary>
    internal const string LegacyPipelineStateKey = "canary";
}

/// <summary>A promotion waiting for an operator.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ApprovalStatus>))]
public enum ApprovalStatus
{
    Pending,
    Approved,
    Rejected,
    Expired,
}

public sealed record Approval
{
    public required string Id { get; init; }
    public required string Adapter { get; init; }
    public required string Version { get; init; }
    public required ApprovalAction Action { get; init; }
    public ApprovalStatus Status { get; init; } = ApprovalStatus.Pending;
    /// <summary>Why it is asked for: the canary verdict, evaluation, etc.</summary>
    public JsonElement? Evidence { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public string? ResolvedBy { get; init; }
    public DateTimeOffset? ResolvedAt { get; init; }
    public string? Comment { get; init; }
}

/// <summary>A pipeline's definition as MLOps set it (the JSON document is the controller's; the store keeps it).</summary>
public sealed record PipelineRecord
{
    public required string Adapter { get; init; }
    public required JsonElement Definition { get; init; }
    public bool Paused { get; init; }
    public long Revision { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
    public string? UpdatedBy { get; init; }
}

/// <summary>
/// An operator's request to run a pipeline now. The lifecycle leaves it in the pipeline's state
/// under <see cref="StateKey"/>; whichever replica runs the scheduler picks it up at its next
/// synchronisation, and one of them claims it by <see cref="Id"/>. Written with the default JSON
/// options (PascalCase names), as it always was.
/// </summary>
public sealed record PipelineRunRequest(string Id, string Actor, DateTimeOffset At)
{
    public const string StateKey = "run_request";
}

/// <summary>One step of one pipeline run, for the job history.</summary>
public sealed record JobRun
{
    public required string RunId { get; init; }
    public required string Adapter { get; init; }
    public required PipelineStep Step { get; init; }
    public required StepStatus Status { get; init; }
    public DateTimeOffset StartedAt { get; init; }
    public DateTimeOffset? FinishedAt { get; init; }
    public RunTrigger? Trigger { get; init; }
    public string? Version { get; init; }
    public string? Message { get; init; }
    public JsonElement? Details { get; init; }
}

/// <summary>Writes an enum as its snake_case name ("rolled_back"), whatever serializer options are used: the wire and stored form.</summary>
public sealed class SnakeCaseEnumConverter<T>() : JsonStringEnumConverter<T>(JsonNamingPolicy.SnakeCaseLower) where T : struct, Enum;

/// <summary>What an approval, once granted, does.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<ApprovalAction>))]
public enum ApprovalAction
{
    /// <summary>Promote the version (it won its canary).</summary>
    Promote,
    /// <summary>Roll the version back.</summary>
    Rollback,
}

/// <summary>The steps of a pipeline run, as the job history names them.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<PipelineStep>))]
public enum PipelineStep
{
    Curate,
    Train,
    Evaluate,
    /// <summary>Starting the canary (or promoting a first version directly).</summary>
    Canary,
    /// <summary>The canary's verdict acted on: promoted, rolled back, or waiting for approval.</summary>
    Decide,
}

/// <summary>Where a step of a run is.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<StepStatus>))]
public enum StepStatus
{
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// <summary>Waiting for an operator's approval.</summary>
    Waiting,
    /// <summary>Stopped before it finished: the controller shut down or lost the run's lease.</summary>
    Cancelled,
}

/// <summary>A held lease; <see cref="Token"/> increases with every grant (a fencing token).</summary>
public sealed record LeaseGrant(string Name, string Owner, long Token, DateTimeOffset ExpiresAt);
