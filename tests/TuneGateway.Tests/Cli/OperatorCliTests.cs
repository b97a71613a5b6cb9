using System.Text.Json;
using TuneGateway.Cli;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Tests.Dashboard;
using TuneGateway.Tests.Engine;
using TuneGateway.Tests.Server;

namespace TuneGateway.Tests.Cli;

/// <summary>
/// <c>tunegw adapters|pipelines|approvals</c> against a real <c>serve</c> host (the lifecycle API,
/// keys with roles): each command through the CLI's own command tree, its output and exit code, and
/// the state it changed checked through the lifecycle store.
/// </summary>
public sealed class OperatorCliTests : IAsyncLifetime
{
    private LifecycleServeHost _host = null!;
    private Approval _approval = null!;

    public async Task InitializeAsync()
    {
        _host = await LifecycleServeHost.StartAsync();
        _approval = await _host.SeedCanaryAwaitingApprovalAsync();
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    /// <summary>Runs <c>tunegw args…</c> in process; the environment holds only <paramref name="environment"/>.</summary>
    private static async Task<(CliExitCode Code, string Out, string Err)> TunegwAsync(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = await TunegwCli.RunAsync(args, output, error, name => environment?.GetValueOrDefault(name));
        return ((CliExitCode)code, output.ToString(), error.ToString());
    }

    private Task<(CliExitCode Code, string Out, string Err)> AsOperatorAsync(params string[] args) =>
        TunegwAsync(null, [.. args, "--url", _host.BaseUrl, "--api-key", LifecycleServeHost.OperatorKey]);

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public async Task AdaptersListShowPromoteAndRollBack()
    {
        var list = await AsOperatorAsync("adapters", "list");
        Assert.True(list.Code == CliExitCode.Ok, list.Err);
        var lines = Lines(list.Out);
        Assert.StartsWith("ADAPTER", lines[0]);
        Assert.Matches(@"^support-bot\s+v1\s+v2\s+2\s+support-bot@v1 90 %, support-bot@v2 10 %$", lines[1]);

        var json = await AsOperatorAsync("adapters", "list", "--json");
        Assert.Equal(CliExitCode.Ok, json.Code);
        var adapter = JsonDocument.Parse(json.Out).RootElement.GetProperty("data").EnumerateArray().Single();
        Assert.Equal(("support-bot", "v1", "v2"), (adapter.GetProperty("adapter").GetString(), adapter.GetProperty("production").GetString(), adapter.GetProperty("canary").GetString()));

        // What the workers serve is listed too, registered or not: a request loads the bundled-style adapter under the artifact root.
        using (var http = new HttpClient())
        {
            var completion = await http.SendAsync(Server.ServerTestHost.Post(_host.BaseUrl + "/v1/completions",
                new { model = "support-bot@v1", prompt = "hi", max_tokens = 1 }, LifecycleServeHost.InferenceKey));
            Assert.Equal(System.Net.HttpStatusCode.OK, completion.StatusCode);
        }
        await Server.ServerTestHost.WaitUntilAsync(async () =>
            Lines((await AsOperatorAsync("adapters", "list")).Out).Any(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^support-bot@v1\s+\S+\s+(resident|loaded)\s+1$")),
            "adapters list to show support-bot@v1 as served");

        var show = await AsOperatorAsync("adapters", "show", LifecycleServeHost.Adapter);
        Assert.True(show.Code == CliExitCode.Ok, show.Err);
        Assert.Contains(Lines(show.Out), l => l.StartsWith("v1") && l.Contains("production"));
        Assert.Contains(Lines(show.Out), l => l.StartsWith("v2") && l.Contains("canary") && l.Contains("ds-2026-02"));
        Assert.Contains($"waiting for approval {_approval.Id}", show.Out);

        var promote = await AsOperatorAsync("adapters", "promote", LifecycleServeHost.Adapter, "v2", "--reason", "cli test");
        Assert.True(promote.Code == CliExitCode.Ok, promote.Err);
        Assert.Equal("support-bot@v2 is now production", promote.Out.Trim());
        Assert.Equal(VersionState.Production, (await _host.Lifecycle.Registry.GetAsync(LifecycleServeHost.Adapter, "v2"))!.State);

        var rollback = await AsOperatorAsync("adapters", "rollback", LifecycleServeHost.Adapter);
        Assert.True(rollback.Code == CliExitCode.Ok, rollback.Err);
        Assert.StartsWith("support-bot@v1 serves the alias", rollback.Out.Trim());
        Assert.Equal(VersionState.Production, (await _host.Lifecycle.Registry.GetAsync(LifecycleServeHost.Adapter, "v1"))!.State);
    }

    [Fact]
    public async Task ApprovalsListApproveAndReject()
    {
        var list = await AsOperatorAsync("approvals", "list");
        Assert.True(list.Code == CliExitCode.Ok, list.Err);
        Assert.Matches($@"^{_approval.Id}\s+promote\s+support-bot\s+v2\s+pending", Lines(list.Out)[1]);

        var approve = await AsOperatorAsync("approvals", "approve", _approval.Id, "--comment", "looks good");
        Assert.True(approve.Code == CliExitCode.Ok, approve.Err);
        Assert.Equal("support-bot@v2: promote approved", approve.Out.Trim());
        Assert.Equal(VersionState.Production, (await _host.Lifecycle.Registry.GetAsync(LifecycleServeHost.Adapter, "v2"))!.State);

        Assert.Equal("No pending approvals.", (await AsOperatorAsync("approvals", "list")).Out.Trim());
        var all = await AsOperatorAsync("approvals", "list", "--status", "all", "--adapter", LifecycleServeHost.Adapter);
        Assert.Matches($@"{_approval.Id}\s+promote\s+support-bot\s+v2\s+approved.*operator", all.Out);

        // Resolving it again is refused by the server: exit 1 with the server's message.
        var again = await AsOperatorAsync("approvals", "reject", _approval.Id);
        Assert.Equal(CliExitCode.Refused, again.Code);
        Assert.StartsWith("error: 409 ", again.Err);
        Assert.Empty(again.Out);
    }

    [Fact]
    public async Task PipelinesListShowPutPauseResumeRunAndJobs()
    {
        var list = await AsOperatorAsync("pipelines", "list");
        Assert.True(list.Code == CliExitCode.Ok, list.Err);
        Assert.Matches(@"^support-bot\s+active\s+0 0 3 \* \* \?", Lines(list.Out)[1]);

        var show = await AsOperatorAsync("pipelines", "show", LifecycleServeHost.Adapter);
        Assert.True(show.Code == CliExitCode.Ok, show.Err);
        Assert.Contains("pipeline: support-bot (active", show.Out);
        Assert.Contains("\"cron\": \"0 0 3 * * ?\"", show.Out);

        using var dir = new TempDirectory();
        string file = Path.Combine(dir.Path, "pipeline.json");
        await File.WriteAllTextAsync(file, """{"schedule": {"cron": "0 30 4 * * ?"}}""");
        long before = (await _host.Lifecycle.Pipelines.GetAsync(LifecycleServeHost.Adapter))!.Revision;
        var put = await AsOperatorAsync("pipelines", "put", LifecycleServeHost.Adapter, file);
        Assert.True(put.Code == CliExitCode.Ok, put.Err);
        var saved = (await _host.Lifecycle.Pipelines.GetAsync(LifecycleServeHost.Adapter))!;
        Assert.Equal($"pipeline support-bot saved (revision {saved.Revision})", put.Out.Trim());
        Assert.True(saved.Revision > before);
        Assert.Equal("0 30 4 * * ?", saved.Definition.GetProperty("schedule").GetProperty("cron").GetString());

        var pause = await AsOperatorAsync("pipelines", "pause", LifecycleServeHost.Adapter);
        Assert.True(pause.Code == CliExitCode.Ok, pause.Err);
        Assert.StartsWith("pipeline support-bot paused", pause.Out);
        Assert.True((await _host.Lifecycle.Pipelines.GetAsync(LifecycleServeHost.Adapter))!.Paused);
        Assert.Matches(@"^support-bot\s+paused", Lines((await AsOperatorAsync("pipelines", "list")).Out)[1]);

        var resume = await AsOperatorAsync("pipelines", "resume", LifecycleServeHost.Adapter);
        Assert.True(resume.Code == CliExitCode.Ok, resume.Err);
        Assert.False((await _host.Lifecycle.Pipelines.GetAsync(LifecycleServeHost.Adapter))!.Paused);

        var run = await AsOperatorAsync("pipelines", "run", LifecycleServeHost.Adapter);
        Assert.True(run.Code == CliExitCode.Ok, run.Err);
        Assert.Equal("run of support-bot requested", run.Out.Trim());
        var audit = await _host.Lifecycle.Registry.GetAuditAsync(LifecycleServeHost.Adapter, 0, 100);
        Assert.Contains(audit, e => e.Action == "pipeline.run" && e.Actor.Contains("operator"));

        var jobs = await AsOperatorAsync("pipelines", "jobs", LifecycleServeHost.Adapter);
        Assert.True(jobs.Code == CliExitCode.Ok, jobs.Err);
        Assert.Contains(Lines(jobs.Out), l => l.Contains("run-0002") && l.Contains("canary") && l.Contains("waiting for approval"));

        // A pipeline for an adapter that has none: the server's 404, exit 1.
        var missing = await AsOperatorAsync("pipelines", "show", "no-such-adapter");
        Assert.Equal(CliExitCode.Refused, missing.Code);
        Assert.Contains("404", missing.Err);
    }

    [Fact]
    public async Task TheUrlAndKeyComeFromTheEnvironmentWhenNotGiven()
    {
        var environment = new Dictionary<string, string> { ["TUNEGW_URL"] = _host.BaseUrl, ["TUNEGW_API_KEY"] = LifecycleServeHost.MlopsKey };
        var list = await TunegwAsync(environment, "adapters", "list");
        Assert.True(list.Code == CliExitCode.Ok, list.Err);
        Assert.Contains("support-bot", list.Out);

        // A flag wins over the environment.
        var flagged = await TunegwAsync(environment, "adapters", "list", "--api-key", "sk-wrong");
        Assert.Equal(CliExitCode.Auth, flagged.Code);
    }

    [Fact]
    public async Task KeysTheServerRefusesExitWithTheAuthCode()
    {
        var none = await TunegwAsync(null, "adapters", "list", "--url", _host.BaseUrl);
        Assert.Equal(CliExitCode.Auth, none.Code);
        Assert.Contains("401", none.Err);
        Assert.Contains("TUNEGW_API_KEY", none.Err);

        var wrong = await TunegwAsync(null, "approvals", "list", "--url", _host.BaseUrl, "--api-key", "sk-not-a-key");
        Assert.Equal(CliExitCode.Auth, wrong.Code);
        Assert.Contains("401", wrong.Err);

        // mlops may read but not promote: 403, and nothing changed.
        var forbidden = await TunegwAsync(null, "adapters", "promote", LifecycleServeHost.Adapter, "v2", "--url", _host.BaseUrl, "--api-key", LifecycleServeHost.MlopsKey);
        Assert.Equal(CliExitCode.Auth, forbidden.Code);
        Assert.Contains("403", forbidden.Err);
        Assert.Equal(VersionState.Canary, (await _host.Lifecycle.Registry.GetAsync(LifecycleServeHost.Adapter, "v2"))!.State);
    }

    [Fact]
    public async Task RefusalsAndUsageErrorsHaveTheirOwnCodes()
    {
        var unknownVersion = await AsOperatorAsync("adapters", "promote", LifecycleServeHost.Adapter, "v9");
        Assert.Equal(CliExitCode.Refused, unknownVersion.Code);
        Assert.Contains("v9", unknownVersion.Err);

        var unknownFlag = await AsOperatorAsync("adapters", "list", "--bogus");
        Assert.Equal(CliExitCode.Usage, unknownFlag.Code);
        Assert.Contains("--bogus", unknownFlag.Err);

        var missingArgument = await AsOperatorAsync("adapters", "promote", LifecycleServeHost.Adapter);
        Assert.Equal(CliExitCode.Usage, missingArgument.Code);

        var notAFile = await AsOperatorAsync("pipelines", "put", LifecycleServeHost.Adapter, "/nonexistent/pipeline.json");
        Assert.Equal(CliExitCode.Usage, notAFile.Code);
        Assert.Contains("/nonexistent/pipeline.json", notAFile.Err);

        var badUrl = await TunegwAsync(null, "adapters", "list", "--url", "localhost:8000");
        Assert.Equal(CliExitCode.Usage, badUrl.Code);
        Assert.Contains("not an http(s) URL", badUrl.Err);
    }

    [Fact]
    public async Task AServerThatCannotBeReachedExitsWithTheUnreachableCode()
    {
        // A port nothing listens on.
        string url = $"http://127.0.0.1:{ServerTestHost.FreePort()}";
        foreach (string[] args in new[] { new[] { "adapters", "list" }, ["pipelines", "list"], ["approvals", "list"] })
        {
            var result = await TunegwAsync(null, [.. args, "--url", url, "--api-key", LifecycleServeHost.OperatorKey]);
            Assert.Equal(CliExitCode.Unreachable, result.Code);
            Assert.Contains($"cannot reach {url}/", result.Err);
            Assert.Empty(result.Out);
        }
    }
}
