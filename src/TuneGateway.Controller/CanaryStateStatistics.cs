using System.Text.Json;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Controller.Statistics;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Controller;

/// <summary>
/// The controller's reading of a stored canary: the lifecycle keeps the sequential tests' state
/// and the last verdict as JSON (it needs no statistics); these turn them back into
/// <see cref="CanaryAnalysisState"/> and write a verdict, in the JSON the canary always held.
/// </summary>
public static class CanaryStateStatistics
{
    /// <summary>The sequential tests' state to continue from (the initial one before the first look).</summary>
    public static CanaryAnalysisState AnalysisState(this CanaryState state) =>
        state.Analysis is { ValueKind: JsonValueKind.Object } analysis
            ? analysis.Deserialize<CanaryAnalysisState>(PipelineDefinition.Json) ?? CanaryAnalysisState.Initial
            : CanaryAnalysisState.Initial;

    /// <summary>The canary after a look: the verdict's test state to continue from, and the verdict to show.</summary>
    public static CanaryState WithVerdict(this CanaryState state, CanaryVerdict verdict) => state with
    {
        Analysis = JsonSerializer.SerializeToElement(verdict.State, PipelineDefinition.Json),
        LastVerdict = JsonSerializer.SerializeToElement(verdict, PipelineDefinition.Json),
    };
}
