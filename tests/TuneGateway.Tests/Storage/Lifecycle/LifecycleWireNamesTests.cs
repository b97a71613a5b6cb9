using System.Text.Json;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Tests.Storage.Lifecycle;

/// <summary>
/// Steps, statuses, outcomes and approval actions are enums in code and the same strings as
/// before on the wire and in both stores, so records written by earlier releases still read.
/// </summary>
public class LifecycleWireNamesTests
{
    [Fact]
    public void RecordsWrittenWithTheFormerStringsReadAsTheEnumsAndWriteTheSameStrings()
    {
        const string job = """{"run_id":"r1","adapter":"bot","step":"decide","status":"waiting","started_at":"2026-11-23T10:00:00+00:00"}""";
        var run = LifecycleJson.Deserialize<JobRun>(job);
        Assert.Equal((PipelineStep.Decide, StepStatus.Waiting), (run.Step, run.Status));
        Assert.Contains("\"step\":\"decide\",\"status\":\"waiting\"", LifecycleJson.Serialize(run));

        const string approval = """{"id":"a1","adapter":"bot","version":"v2","action":"promote","status":"pending","created_at":"2026-11-23T10:00:00+00:00"}""";
        var parsed = LifecycleJson.Deserialize<Approval>(approval);
        Assert.Equal(ApprovalAction.Promote, parsed.Action);
        Assert.Contains("\"action\":\"promote\"", LifecycleJson.Serialize(parsed));
    }

    [Fact]
    public void EveryNameIsSnakeCaseWhateverTheSerializerOptions()
    {
        // The type-level converters apply even with default options (the operator API and the dashboard read these names).
        Assert.Equal("\"rollback\"", JsonSerializer.Serialize(ApprovalAction.Rollback));
        Assert.Equal("\"succeeded\"", JsonSerializer.Serialize(StepStatus.Succeeded));
        Assert.Equal("\"evaluate\"", JsonSerializer.Serialize(PipelineStep.Evaluate));
        Assert.Equal("\"promoted\"", JsonSerializer.Serialize(RunOutcome.Promoted));
        Assert.Equal(["curate", "train", "evaluate", "canary", "decide"], Enum.GetValues<PipelineStep>().Select(LifecycleJson.Name));
    }
}
