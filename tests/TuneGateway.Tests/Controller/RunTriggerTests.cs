using System.Text.Json;
using TuneGateway.Storage.Lifecycle;

namespace TuneGateway.Tests.Controller;

/// <summary>Triggers are typed in code and stored as the strings earlier versions wrote; both directions must hold.</summary>
public sealed class RunTriggerTests
{
    // Every form the controller has written into job histories, with the kind it must read back as.
    [Theory]
    [InlineData("schedule", TriggerKind.Schedule, null)]
    [InlineData("schedule (0 3 * * * Europe/Paris)", TriggerKind.Schedule, "0 3 * * * Europe/Paris")]
    [InlineData("manual by alice", TriggerKind.Manual, "alice")]
    [InlineData("manual", TriggerKind.Manual, null)]
    [InlineData("drift: psi 0.31 on prompt length; ks p=0.001", TriggerKind.Drift, "psi 0.31 on prompt length; ks p=0.001")]
    [InlineData("feedback: 150 new items", TriggerKind.Feedback, "150 new items")]
    [InlineData("missed firing of 2026-12-01 03:00:00Z (misfire: fire once now)", TriggerKind.Misfire, "2026-12-01 03:00:00Z")]
    [InlineData("canary check", TriggerKind.CanaryCheck, null)]
    [InlineData("webhook from ci", TriggerKind.Other, "webhook from ci")]
    public void StoredTextsReadBackAsTheirKind(string text, TriggerKind kind, string? detail)
    {
        var trigger = RunTrigger.Parse(text);
        Assert.Equal(kind, trigger.Kind);
        Assert.Equal(detail, trigger.Detail);
        if (text != "manual") Assert.Equal(text, trigger.ToString());
    }

    [Fact]
    public void FactoriesWriteTheFormsTheControllerAlwaysWrote()
    {
        Assert.Equal("manual by bob", RunTrigger.Manual("bob").ToString());
        Assert.Equal("feedback: 150 new items", RunTrigger.Feedback(150).ToString());
        Assert.Equal("drift: a; b", RunTrigger.Drift(["a", "b"]).ToString());
        Assert.Equal("missed firing of 2026-12-01 03:00:00Z (misfire: fire once now)",
            RunTrigger.Misfire(new DateTimeOffset(2026, 12, 1, 3, 0, 0, TimeSpan.Zero)).ToString());
    }

    [Fact]
    public void AJobRunKeepsItsTriggerAsOneStringInTheStore()
    {
        var run = new JobRun { RunId = "r", Adapter = "bot", Step = PipelineStep.Train, Status = StepStatus.Cancelled, Trigger = RunTrigger.Manual("ops") };
        string json = LifecycleJson.Serialize(run);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("manual by ops", doc.RootElement.GetProperty("trigger").GetString());
        Assert.Equal("cancelled", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal(RunTrigger.Manual("ops"), LifecycleJson.Deserialize<JobRun>(json).Trigger);
        Assert.Null(LifecycleJson.Deserialize<JobRun>("""{"run_id":"r","adapter":"bot","step":"curate","status":"running"}""").Trigger);
    }
}
