using TuneGateway.Controller.Pipelines;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Tests.Deployment;

namespace TuneGateway.Tests.Controller;

/// <summary>Pipeline configuration files: the example the deployment ships parses, and bad files name what is wrong.</summary>
public sealed class PipelineConfigFileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("tunegw-pipelines-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void TheDeploymentExampleConfigurationParses()
    {
        var pipelines = PipelineConfigFile.Read(Path.Combine(DeployValidator.RepoRoot, "deploy", "config", "tunegw.json"));
        var pipeline = Assert.Single(pipelines);
        Assert.Equal("support-bot", pipeline.Adapter);
        Assert.Equal("0 0 3 * * ?", pipeline.Schedule.Cron);
        Assert.Equal(PromotionPolicy.Approval, pipeline.Promotion);
        Assert.Equal(0.1, pipeline.Canary.Settings.CandidateTrafficShare);
        Assert.Equal(TimeSpan.FromDays(7), pipeline.Data.Window);
    }

    [Theory]
    [InlineData("[{\"adapter\": \"a\"}, {\"adapter\": \"a\"}]", "more than one pipeline")]
    [InlineData("{\"pipelines\": [{\"adapter\": \"a\", \"schedule\": {\"cron\": \"not a cron\"}}]}", "pipeline 0")]
    [InlineData("{\"pipelines\": {\"adapter\": \"a\"}}", "must be a JSON array")]
    [InlineData("{\"pipelines\": [", "not valid JSON")]
    public void ABadFileNamesTheFileAndWhatIsWrong(string json, string expected)
    {
        string path = Path.Combine(_directory, "pipelines.json");
        File.WriteAllText(path, json);
        var error = Assert.Throws<ArgumentException>(() => PipelineConfigFile.Read(path));
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFileWithoutPipelinesGivesNone()
    {
        string path = Path.Combine(_directory, "empty.json");
        File.WriteAllText(path, "{\"TuneGateway\": {\"Gateway\": {}}}");
        Assert.Empty(PipelineConfigFile.Read(path));
        Assert.Throws<FileNotFoundException>(() => PipelineConfigFile.Read(Path.Combine(_directory, "missing.json")));
    }
}
