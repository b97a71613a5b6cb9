using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using TuneGateway.Controller;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Controller.Statistics;
using TuneGateway.Gateway;
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Gateway.Auth;
using GatewayOptions = TuneGateway.Gateway.Proxy.GatewayOptions;
using TuneGateway.Worker;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Tests.Engine;
using TuneGateway.Tests.Server;

namespace TuneGateway.Tests.Dashboard;

/// <summary>
/// A <c>serve</c> host with the adapter lifecycle on (the embedded store), for the dashboard
/// tests: the lifecycle API is mapped and the gateway routes on the lifecycle's aliases. Adapter versions are real adapter files laid out <c>{root}/{adapter}/{version}/</c>,
/// which is also the worker's LoRA directory, so <c>support-bot@v2</c> is servable.
/// </summary>
public sealed class LifecycleServeHost : IAsyncDisposable
{
    public const string OperatorKey = "sk-dash-operator";
    public const string MlopsKey = "sk-dash-mlops";
    public const string InferenceKey = "sk-dash-inference";
    public const string AdminKey = "sk-dash-admin";
    /// <summary>The worker role: registering workers is its right alone.</summary>
    public const string WorkerKey = "sk-dash-worker";
    public const string Adapter = "support-bot";

    private readonly string _root;

    private LifecycleServeHost(WebApplication app, string root, string baseUrl)
    {
        App = app;
        _root = root;
        BaseUrl = baseUrl;
    }

    public WebApplication App { get; }
    public string BaseUrl { get; }
    public string ArtifactRoot => _root;
    public LifecycleManager Lifecycle => App.Services.GetRequiredService<LifecycleManager>();
    public IJobHistory Jobs => App.Services.GetRequiredService<IJobHistory>();

    public static async Task<LifecycleServeHost> StartAsync(Action<IServiceCollection>? configureServices = null)
    {
        string root = Directory.CreateTempSubdirectory("tunegw-dashboard-").FullName;
        ApiKeyEntry[] keys =
        [
            new() { Name = "operator", Key = OperatorKey, Roles = [Roles.Operator] },
            new() { Name = "mlops", Key = MlopsKey, Roles = [Roles.Mlops] },
            new() { Name = "inference", Key = InferenceKey, Roles = [Roles.Inference] },
            new() { Name = "admin", Key = AdminKey, Roles = [Roles.Admin] },
            new() { Name = "worker", Key = WorkerKey, Roles = [Roles.Worker] },
        ];
        var settings = ServerTestHost.Settings(keys) with { ConfigureServices = configureServices };
        // serve as `tunegw serve --data-dir` runs it: the embedded lifecycle store, the artifact directory searched for name@version.
        var engine = ServerTestHost.TinyEngine(loraDirectory: root);
        var app = ServeHost.Create(new WorkerOptions { Engine = engine }, new GatewayOptions(), settings,
            lifecycle: new LifecycleSettings { DataDirectory = Path.Combine(root, ".state"), ArtifactDirectory = root });
        try
        {
            await app.StartAsync();
            string baseUrl = ServerTestHost.BaseUrl(app);
            using var http = new HttpClient();
            await ServerTestHost.WaitReadyAsync(http, baseUrl);
            return new LifecycleServeHost(app, root, baseUrl);
        }
        catch
        {
            await app.DisposeAsync();
            Directory.Delete(root, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// support-bot: v1 in production, v2 (trained from v1) in a 10 % canary that the analysis
    /// found better, waiting for an operator's approval; a pipeline, job history and drift checks.
    /// </summary>
    public async Task<Approval> SeedCanaryAwaitingApprovalAsync()
    {
        var lifecycle = Lifecycle;
        var v1 = await RegisterAsync("v1", "shout", parent: null, dataset: "ds-2026-01", accuracy: (61, 100));
        await lifecycle.PromoteAsync(Adapter, v1.Version, "seed", "first production version");
        var v2 = await RegisterAsync("v2", "reverse", parent: "v1", dataset: "ds-2026-02", accuracy: (68, 100));
        var canary = await lifecycle.StartCanaryAsync(Adapter, v2.Version, 0.1, "run-0002", "controller");

        var verdict = Verdict(requestsPerArmUnit: 1000, TimeSpan.FromHours(6));
        var evidence = JsonSerializer.SerializeToElement(verdict, PipelineDefinition.Json);
        var approval = await lifecycle.RequestApprovalAsync(Adapter, v2.Version, ApprovalAction.Promote, evidence, "canary", "won its canary");
        await lifecycle.SaveCanaryAsync(Adapter, canary.WithVerdict(verdict) with { ApprovalId = approval.Id }, CancellationToken.None);

        var pipeline = new PipelineDefinition { Adapter = Adapter, Schedule = new ScheduleSettings { Cron = "0 0 3 * * ?" } };
        await lifecycle.PutPipelineAsync(Adapter, pipeline.ToJson(), "key:mlops");
        var started = DateTimeOffset.UtcNow.AddHours(-7);
        PipelineStep[] steps = [PipelineStep.Curate, PipelineStep.Train, PipelineStep.Evaluate, PipelineStep.Canary];
        for (int i = 0; i < steps.Length; i++)
        {
            await Jobs.RecordAsync(new JobRun
            {
                RunId = "run-0002", Adapter = Adapter, Step = steps[i], Status = i < 3 ? StepStatus.Succeeded : StepStatus.Waiting, Trigger = RunTrigger.Schedule(), Version = "v2",
                StartedAt = started.AddMinutes(10 * i), FinishedAt = i < 3 ? started.AddMinutes(10 * i + 8) : null,
                Message = i == 3 ? "waiting for approval" : null,
            });
        }
        await lifecycle.SavePipelineStateAsync(Adapter, DriftMonitor.HistoryKey, JsonSerializer.SerializeToElement(DriftHistory(), PipelineDefinition.Json));
        return approval;
    }

    /// <summary>A later look at the canary: more traffic on both arms, the same proportions.</summary>
    public async Task<CanaryVerdict> AdvanceCanaryAsync(long requestsPerArmUnit, TimeSpan elapsed)
    {
        var canary = await Lifecycle.CanaryAsync(Adapter) ?? throw new InvalidOperationException("No canary is running.");
        var verdict = Verdict(requestsPerArmUnit, elapsed);
        await Lifecycle.SaveCanaryAsync(Adapter, canary.WithVerdict(verdict), CancellationToken.None);
        return verdict;
    }

    /// <summary>The analysis of a 90/10 canary: control at 35 % positive feedback, the candidate at 45 %.</summary>
    private static CanaryVerdict Verdict(long requestsPerArmUnit, TimeSpan elapsed)
    {
        var settings = new CanarySettings { Guardrails = new GuardrailSettings { MaxP95LatencyMs = 2000, MaxP95TimeToFirstTokenMs = 500, MaxErrorRateIncrease = 0.02 } };
        long n = requestsPerArmUnit;
        return new CanaryAnalyzer(settings).Analyze(
            Arm(requests: 9 * n, errors: 9 * n / 200, positive: 9 * n * 35 / 100, taskMean: 0.6, latencyMs: 120),
            Arm(requests: n, errors: n * 6 / 1000, positive: n * 45 / 100, taskMean: 0.7, latencyMs: 110),
            elapsed);
    }

    private async Task<RegisteredVersion> RegisterAsync(string version, string fixtureAdapter, string? parent, string dataset, (int Correct, int Examples) accuracy)
    {
        string directory = Path.Combine(_root, Adapter, version);
        Directory.CreateDirectory(directory);
        foreach (string file in Directory.GetFiles(Path.Combine(Fixtures.LlamaTinyAdapters, fixtureAdapter)))
            File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
        string sha = Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(Path.Combine(directory, "adapter_model.safetensors"))));
        var report = JsonSerializer.SerializeToElement(new
        {
            base_model = "llama-tiny", data_sha256 = Hash(dataset), train_examples = 800, validation_examples = 100, skipped_examples = 0,
            steps = new[] { new { step = 1, epoch = 1, loss = 2.1 }, new { step = 2, epoch = 2, loss = 1.4 } },
            best_validation_loss = 1.52, epochs_run = 2, stopped = "completed", seconds = 95.0,
        });
        var evaluation = JsonSerializer.SerializeToElement(new
        {
            passed = true, reason = "hold-out accuracy improved",
            candidate_holdout = new { model = $"{Adapter}@{version}", set = "holdout", examples = accuracy.Examples, correct = accuracy.Correct },
        });
        return await Lifecycle.RegisterCandidateAsync(new RegisteredVersion
        {
            Adapter = Adapter, Version = version, ArtifactPath = directory, Sha256 = sha, ParentVersion = parent,
            DatasetId = dataset, DatasetSha256 = Hash(dataset), BaseModel = "llama-tiny", TrainingReport = report, Evaluation = evaluation,
        }, "controller", "trained by the pipeline");
    }

    private static ArmObservations Arm(long requests, long errors, long positive, double taskMean, double latencyMs)
    {
        var random = new Random(requests.GetHashCode());
        double[] scores = [.. Enumerable.Range(0, 300).Select(_ => random.NextDouble() < taskMean ? 1.0 : 0.0)];
        double[] latencies = [.. Enumerable.Range(0, (int)Math.Min(requests, 1000)).Select(_ => latencyMs * (0.5 + random.NextDouble()))];
        return new ArmObservations
        {
            Requests = requests, Errors = errors, PositiveFeedback = positive, NegativeFeedback = requests / 20,
            TaskMetric = MetricSummary.FromValues(scores), LatenciesMs = latencies, TimeToFirstTokenMs = [.. latencies.Select(l => l / 4)],
        };
    }

    private static List<DriftCheck> DriftHistory()
    {
        var thresholds = new DriftThresholds();
        var start = DateTimeOffset.UtcNow.AddHours(-4);
        return [.. Enumerable.Range(0, 5).Select(i =>
        {
            double psi = 0.04 + 0.05 * i;
            NumericDrift[] numeric =
            [
                new("prompt_tokens", 1000, 300, psi, 0.08, 0.2, KsPValueMethod.Auto, true, psi > thresholds.Psi, false),
                new("latency_ms", 1000, 300, psi / 2, 0.05, 0.5, KsPValueMethod.Auto, true, false, false),
            ];
            string[] alarms = psi > thresholds.Psi ? [$"psi prompt_tokens = {psi:0.00} > {thresholds.Psi}"] : [];
            var report = new DriftReport(numeric, new TokenDrift(0.03 + 0.01 * i, 64, 50_000, 12_000, 0.02, true, false),
                new EmbeddingDrift(0.001, 0.4 - 0.07 * i, 1.2, 200, 100, 500, true, false), alarms, thresholds);
            return new DriftCheck(start.AddHours(i), "v1", report, "training_data");
        })];
    }

    private static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)));

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
