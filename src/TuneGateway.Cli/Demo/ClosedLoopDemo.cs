using TuneGateway.Storage;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuneGateway.Controller;
using TuneGateway.Controller.Pipelines;
using TuneGateway.Controller.Statistics;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Serving;
using TuneGateway.Server;
using TuneGateway.Server.Gateway;
using TuneGateway.Server.Lifecycle;
using TuneGateway.Server.Worker;
using TuneGateway.Storage.Lifecycle;
using TuneGateway.Training;

namespace TuneGateway.Cli.Demo;

/// <summary>What <c>tunegw demo</c> runs on.</summary>
internal sealed record DemoOptions
{
    /// <summary>Redis connection string; null: the embedded stores.</summary>
    public string? Redis { get; init; }
    /// <summary>Where data, artifacts and datasets go; null: a temporary directory removed at the end.</summary>
    public string? WorkDirectory { get; init; }
    public int Seed { get; init; } = 7;
    public int Users { get; init; } = 6;
    /// <summary>Give up after this long.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(12);
    public bool Verbose { get; init; }
}

/// <summary>The demo's last line.</summary>
internal sealed record DemoResult(double? AccuracyBefore, double? AccuracyAfter, string? Promoted, string? BadCandidate, double Seconds);

/// <summary>
/// The closed loop on the bundled model, end to end and in one process: <c>serve</c> with the
/// traffic log, the lifecycle stores and the retraining controller (Quartz); v1 of a ticket router
/// trained on last quarter's tickets and promoted; then the vocabulary drifts, simulated users rate
/// answers and send corrections through <c>/v1/feedback</c>; the feedback trigger runs the pipeline
/// (curate, train in a child process, offline gate), the candidate meets half the traffic in a
/// canary, and the sequential test promotes it. Last, a labelling bug sends a batch of corrupted
/// corrections; the candidate trained on them must be stopped by the offline gate's golden set (or
/// the canary) and never take all traffic.
/// </summary>
internal sealed class ClosedLoopDemo(DemoOptions options, TextWriter output)
{
    public const string Adapter = "ticket-router";
    /// <summary>Enough for the longest queue name in the tiny model's small vocabulary, and its end-of-sequence token.</summary>
    public const int AnswerTokens = 12;
    private const int FeedbackTrigger = 150;
    private static readonly TimeSpan CurationWindow = TimeSpan.FromSeconds(20);

    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Dictionary<string, string> _printedJobs = new(StringComparer.Ordinal);

    public async Task<(DemoResult Result, string? Failure)> RunAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.Timeout);
        var ct = timeout.Token;
        bool temporary = options.WorkDirectory is null;
        string root = options.WorkDirectory ?? Directory.CreateTempSubdirectory("tunegw-demo-").FullName;
        string data = Path.Combine(root, "data"), artifacts = Path.Combine(root, "artifacts");
        Directory.CreateDirectory(root);
        // A fresh key space per run, so the demo never meets an earlier run's state in a shared Redis.
        string prefix = $"tunegw-demo-{DateTime.UtcNow:yyyyMMddHHmmss}-{Guid.NewGuid().ToString("N")[..6]}";
        double? before = null, after = null;
        string? promoted = null, bad = null;
        try
        {
            Say($"tunegw demo: the retraining loop on the bundled model ({(options.Redis is null ? "embedded stores under " + root : "Redis " + options.Redis)})");
            await using var app = await StartServerAsync(data, artifacts, prefix, ct);
            // Stop the hosted services (Quartz first among them) before the container is disposed, however the demo ends.
            await using var stop = new AsyncStop(app);
            string baseUrl = app.Urls.First();
            using var http = new HttpClient { BaseAddress = new Uri(baseUrl + "/"), Timeout = TimeSpan.FromMinutes(2) };
            var lifecycle = app.Services.GetRequiredService<LifecycleManager>();
            var history = app.Services.GetRequiredService<IJobHistory>();
            Say($"serve is up on {baseUrl}: gateway, worker, traffic log, lifecycle store and controller in one process");

            // 1. Version 1, trained on last quarter's tickets and promoted.
            var v1 = await TrainFirstVersionAsync(http, artifacts, ct);
            Say($"{Adapter}@{v1} trained on {OldTrainingSize} tickets of the old vocabulary and promoted to production");
            var newTickets = TicketTask.All(TicketTask.NewVocabulary);
            var oldTickets = TicketTask.All(TicketTask.OldVocabulary);
            before = await AccuracyAsync(http, $"{Adapter}@{v1}", newTickets, ct);
            double v1Old = await AccuracyAsync(http, $"{Adapter}@{v1}", oldTickets, ct);
            Say($"accuracy of {Adapter}@{v1}: {v1Old:P0} on old-vocabulary tickets, {before:P0} on the new vocabulary");

            // 2. The pipeline: feedback-triggered, golden set, 50 % canary, automatic promotion.
            var pipeline = Pipeline(WriteGoldenSet(root));
            await PutPipelineAsync(http, pipeline, ct);
            Say($"pipeline set: retrain after {FeedbackTrigger} feedback items; offline gate: hold-out +{pipeline.Evaluation.MinImprovement:P0}, golden set must not drop more than {pipeline.Evaluation.MaxGoldenRegression:P0}; canary {pipeline.Canary.Settings.CandidateTrafficShare:P0}, auto-promote");

            // 3. The product changes: tickets use new words; users rate answers and correct wrong ones.
            using var users = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var traffic = new TrafficSimulation(http, options.Seed, newShare: 0.8);
            var running = traffic.RunAsync(options.Users, FeedbackMode.Honest, users.Token);
            Say($"{options.Users} simulated users send tickets (80 % in the new vocabulary), rate each answer and correct the wrong ones");
            await WaitForAsync(() => Task.FromResult(traffic.Requests >= 200), "the first 200 requests", history, ct);
            var drift = await app.Services.GetRequiredService<DriftMonitor>().CheckAsync(pipeline, ct);
            if (drift is not null)
                Say(drift.Report.DriftDetected
                    ? $"drift on {Adapter}@{v1} against {drift.ReferenceSource}: {string.Join("; ", drift.Report.Alarms.Take(3))}"
                    : $"no drift alarm yet against {drift.ReferenceSource}");

            // 4. The loop: trigger → curate → train → gate → canary → promote.
            RegisteredVersion? winner = null;
            bool paused = false;
            await WaitForAsync(async () =>
            {
                // Once a canary runs, pause the pipeline: no new candidate while this one is judged (its monitor keeps running).
                if (!paused && await lifecycle.CanaryAsync(Adapter, ct) is not null)
                {
                    (await PostAsync(http, $"admin/pipelines/{Adapter}/pause", new { }, ct)).Dispose();
                    paused = true;
                    Say("canary started: the pipeline is paused while it runs (the canary monitor keeps watching)");
                }
                var versions = await lifecycle.Registry.ListVersionsAsync(Adapter, ct);
                winner = versions.FirstOrDefault(v => v.Version != v1 && v.State == VersionState.Production);
                return winner is not null;
            }, "a retrained version to win its canary", history, ct);
            if (!paused) (await PostAsync(http, $"admin/pipelines/{Adapter}/pause", new { }, ct)).Dispose();
            await users.CancelAsync();
            await running;
            promoted = winner!.ModelName;
            var verdict = (await history.ListAsync(Adapter, 200, ct)).FirstOrDefault(r => r.Step == PipelineStep.Decide && r.Version == winner.Version);
            Say($"{promoted} promoted; {traffic.Describe()}");
            if (verdict?.Message is { } why) Say($"  canary verdict: {why}");
            after = await AccuracyAsync(http, promoted, newTickets, ct);
            double afterOld = await AccuracyAsync(http, promoted, oldTickets, ct);
            Say($"accuracy of {promoted}: {afterOld:P0} on old-vocabulary tickets, {after:P0} on the new vocabulary (was {before:P0})");

            // 5. A quiet spell longer than the curation window, then a labelling bug: corrections with wrong queues; the pipeline resumes.
            Say($"quiet for {CurationWindow.TotalSeconds:F0} s (the curation window)");
            await Task.Delay(CurationWindow, ct);
            var corrupted = new TrafficSimulation(http, options.Seed + 1, newShare: 0.8);
            await corrupted.SendBatchAsync(newTickets.Concat(newTickets).Concat(oldTickets).ToArray(), FeedbackMode.Corrupted, options.Users, ct);
            Say($"a labelling bug sent {corrupted.Feedback} corrections that name the wrong queue; the pipeline resumes");
            var resumedAt = DateTimeOffset.UtcNow;
            (await PostAsync(http, $"admin/pipelines/{Adapter}/resume", new { }, ct)).Dispose();
            RegisteredVersion? stopped = null;
            using var keepServing = CancellationTokenSource.CreateLinkedTokenSource(ct);
            // Users keep coming; they rate again once the run has curated its data (should the candidate reach a canary, their ratings decide it).
            var live = new TrafficSimulation(http, options.Seed + 2, newShare: 0.8) { FeedbackRate = 0 };
            var background = live.RunAsync(options.Users, FeedbackMode.Honest, keepServing.Token);
            await WaitForAsync(async () =>
            {
                if (live.FeedbackRate == 0 && (await history.ListAsync(Adapter, 20, ct)).Any(r => r.Step == PipelineStep.Curate && r.Status == StepStatus.Succeeded && r.StartedAt >= resumedAt))
                    live.FeedbackRate = 1;
                var versions = await lifecycle.Registry.ListVersionsAsync(Adapter, ct);
                // Only a candidate trained after the labelling batch counts (earlier runs may have rejected honest candidates).
                stopped = versions.FirstOrDefault(v => v.CreatedAt >= resumedAt && v.State is VersionState.Rejected or VersionState.RolledBack);
                return stopped is not null;
            }, "the candidate trained on corrupted labels to be stopped", history, ct);
            await keepServing.CancelAsync();
            await background;
            bad = stopped!.State == VersionState.Rejected ? "rejected" : "rolled_back";
            Say($"{stopped.ModelName} {bad.Replace('_', ' ')}: {stopped.StateReason}");

            var production = await lifecycle.ProductionAsync(Adapter, ct);
            var route = await lifecycle.Aliases.GetAsync(Adapter, ct);
            Say($"production is {production?.ModelName}; the alias routes {string.Join(", ", route?.Arms.Select(a => $"{a.Model} {a.Weight:P0}") ?? [])}");
            string? failure = production?.ModelName != promoted ? $"production is {production?.ModelName}, not {promoted}"
                : route?.Arms.Any(a => a.Model == stopped.ModelName && a.Weight > 0) == true ? $"{stopped.ModelName} still takes traffic"
                : !(after > before) ? $"accuracy did not rise ({before:P0} → {after:P0})"
                : null;
            return (new DemoResult(before, after, promoted, bad, Math.Round(_clock.Elapsed.TotalSeconds, 1)), failure);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return (new DemoResult(before, after, promoted, bad, Math.Round(_clock.Elapsed.TotalSeconds, 1)), $"the demo did not finish within {options.Timeout.TotalMinutes:F0} minutes");
        }
        finally
        {
            if (temporary)
            {
                try { Directory.Delete(root, recursive: true); }
                catch (IOException) { }
            }
        }
    }

    private const int OldTrainingSize = 240;

    private static readonly LoraTrainingOptions Training = new()
    {
        Rank = 16, Alpha = 32, LearningRate = 1e-2, Epochs = 6, BatchSize = 16, ValidationSplit = 0.1, Patience = 3, Seed = 1, Threads = 2,
    };

    private async Task<WebApplication> StartServerAsync(string data, string artifacts, string prefix, CancellationToken ct)
    {
        var engine = new EngineOptions
        {
            ModelDirectory = BundledModel.Directory,
            Device = "cpu",
            MaxNumSeqs = 16,
            Adapters = new AdapterManagerOptions { MaxLoras = 4, AdditionalLoraDirectories = [artifacts] },
        };
        var settings = new HostSettings
        {
            Urls = ["http://127.0.0.1:0"],
            ConfigureLogging = logging => logging.SetMinimumLevel(options.Verbose ? LogLevel.Information : LogLevel.Warning)
                .AddFilter("tunegw", options.Verbose ? LogLevel.Information : LogLevel.Error),
        };
        var app = ServerHost.CreateServe(new WorkerOptions { Engine = engine }, new GatewayOptions(), settings,
            traffic: new TrafficLogSettings { RedisConnectionString = options.Redis, DataDirectory = data, Configure = o => o.KeyPrefix = prefix },
            lifecycle: new LifecycleSettings
            {
                RedisConnectionString = options.Redis,
                DataDirectory = data,
                ArtifactDirectory = artifacts,
                KeyPrefix = prefix,
                Controller = new ControllerHosting
                {
                    Options = new ControllerOptions { BaseModelDirectory = BundledModel.Directory, ArtifactDirectory = artifacts, TrainingDevice = "cpu", EvaluationParallelism = 4 },
                },
            });
        try
        {
            await app.StartAsync(ct);
            using var probe = new HttpClient { BaseAddress = new Uri(app.Urls.First() + "/") };
            await WaitForAsync(async () => (await probe.GetAsync("readyz", ct)).IsSuccessStatusCode, "the worker to load the model", null, ct);
            return app;
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }

    /// <summary>v1: trained on the old vocabulary by <c>tunegw train</c>, registered and promoted through the API.</summary>
    private async Task<string> TrainFirstVersionAsync(HttpClient http, string artifacts, CancellationToken ct)
    {
        // The dataset lives where the pipeline looks for a version's data: the drift reference and the parent examples of v2.
        string dataset = Path.Combine(artifacts, Adapter, "datasets", "bootstrap");
        var examples = TicketTask.Sample(TicketTask.OldVocabulary, OldTrainingSize, options.Seed).ToArray();
        Curator.WriteJsonLines(Path.Combine(dataset, "train.jsonl"), examples[..(OldTrainingSize * 9 / 10)]);
        Curator.WriteJsonLines(Path.Combine(dataset, "validation.jsonl"), examples[(OldTrainingSize * 9 / 10)..]);
        string output = Path.Combine(dataset, "training");
        var clock = Stopwatch.StartNew();
        await ProcessTrainer.ForCurrentProcess().TrainAsync(new TrainingRequest(BundledModel.Directory, Path.Combine(dataset, "train.jsonl"),
            Path.Combine(dataset, "validation.jsonl"), output, Training with { ValidationSplit = 0 }, "cpu"), ct);
        Say($"tunegw train (a child process) trained the first adapter in {clock.Elapsed.TotalSeconds:F1} s");
        using var registered = await PostAsync(http, $"admin/adapters/{Adapter}/versions",
            new { path = output, dataset_id = "bootstrap", promote = true, reason = "first version, trained on last quarter's tickets" }, ct);
        return registered.RootElement.GetProperty("version").GetString()!;
    }

    private static string WriteGoldenSet(string root)
    {
        // A fixed, verified set across both vocabularies: a candidate that gets either wrong does not ship.
        var random = new Random(11);
        var golden = TicketTask.All(TicketTask.OldVocabulary).OrderBy(_ => random.Next()).Take(24)
            .Concat(TicketTask.All(TicketTask.NewVocabulary).OrderBy(_ => random.Next()).Take(24)).ToArray();
        string path = Path.Combine(root, "golden.jsonl");
        Curator.WriteJsonLines(path, golden);
        return path;
    }

    private static PipelineDefinition Pipeline(string goldenSet) => new()
    {
        Adapter = Adapter,
        Triggers = new TriggerSettings { OnDrift = false, FeedbackCount = FeedbackTrigger, CheckInterval = TimeSpan.FromSeconds(2) },
        // The last 20 s of rated traffic, repeats kept (a ticket asked often weighs more); not the parent's data: the
        // traffic carries both vocabularies (which is also why a corrupted batch alone would shape the next candidate).
        Data = new DataRules { Window = CurationWindow, MinExamples = 60, MinScore = 0.5, Dedupe = false, MaxExamples = 3000, IncludeParentData = false },
        Split = new SplitSettings { Validation = 0.1, Holdout = 0.15 },
        Training = Training with { Epochs = 8 },
        Evaluation = new EvaluationSettings { MinImprovement = 0.05, GoldenSet = goldenSet, MaxGoldenRegression = 0.05, MaxTokens = AnswerTokens },
        Canary = new CanaryPlan
        {
            CheckInterval = TimeSpan.FromSeconds(2),
            Settings = new CanarySettings
            {
                CandidateTrafficShare = 0.5, MinSamplesPerArm = 60, MinTaskMetricSamplesPerArm = 40, SampleRatioMinRequests = 100, MaxDuration = TimeSpan.FromMinutes(10),
            },
        },
        Promotion = PromotionPolicy.Auto,
    };

    private static async Task PutPipelineAsync(HttpClient http, PipelineDefinition pipeline, CancellationToken ct)
    {
        using var response = await http.PutAsync($"admin/pipelines/{Adapter}", JsonContent.Create(pipeline.ToJson()), ct);
        await EnsureAsync(response, ct);
    }

    private static async Task<JsonDocument> PostAsync(HttpClient http, string path, object body, CancellationToken ct)
    {
        using var response = await http.PostAsJsonAsync(path, body, ct);
        await EnsureAsync(response, ct);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
    }

    private static async Task EnsureAsync(HttpResponseMessage response, CancellationToken ct)
    {
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"{response.RequestMessage?.Method} {response.RequestMessage?.RequestUri} failed with {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
    }

    /// <summary>Exact-match accuracy of greedy answers, through the gateway (as evaluation, so unlogged).</summary>
    private static async Task<double> AccuracyAsync(HttpClient http, string model, IReadOnlyList<TrainingExample> examples, CancellationToken ct)
    {
        var result = await Evaluator.AccuracyAsync(new GatewayCompletionClient(http, apiKey: null), model, "demo", examples, AnswerTokens, parallelism: 8, ct);
        return Math.Round(result.Accuracy, 3);
    }

    /// <summary>Polls until <paramref name="done"/>, printing the pipeline's job history as it changes.</summary>
    private async Task WaitForAsync(Func<Task<bool>> done, string what, IJobHistory? history, CancellationToken ct)
    {
        while (true)
        {
            if (history is not null) await PrintJobsAsync(history, ct);
            try
            {
                if (await done()) return;
            }
            catch (HttpRequestException) when (history is null)
            {
                // The server is still starting.
            }
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
            }
            catch (OperationCanceledException)
            {
                throw new OperationCanceledException($"Gave up waiting for {what}.", ct);
            }
        }
    }

    private async Task PrintJobsAsync(IJobHistory history, CancellationToken ct)
    {
        var runs = await history.ListAsync(Adapter, 50, ct);
        foreach (var run in runs.Reverse())
        {
            if (run.Status == StepStatus.Running && run.Step != PipelineStep.Canary) continue;
            string key = $"{run.RunId}/{run.Step}";
            string state = $"{run.Status}|{run.Message}";
            if (_printedJobs.TryGetValue(key, out var seen) && seen == state) continue;
            _printedJobs[key] = state;
            string message = run.Message is { Length: > 160 } long_ ? long_[..157] + "..." : run.Message ?? "";
            Say($"  job {LifecycleJson.Name(run.Step),-8} {LifecycleJson.Name(run.Status),-9} {(run.Version is null ? "" : Adapter + "@" + run.Version + ": ")}{message}");
        }
    }

    private void Say(string line) => output.WriteLine($"[{_clock.Elapsed.TotalSeconds,6:F1}s] {line}");
}

internal enum FeedbackMode
{
    /// <summary>+1 for a right queue; -1 and the right queue as the correction for a wrong one.</summary>
    Honest,
    /// <summary>A labelling bug: -1 and a wrong queue as the correction, whatever the answer.</summary>
    Corrupted,
}

/// <summary>Simulated users: tickets through the alias, answers rated and corrected through <c>/v1/feedback</c>.</summary>
internal sealed class TrafficSimulation(HttpClient http, int seed, double newShare)
{
    private readonly ConcurrentDictionary<string, (long Requests, long Correct)> _byVersion = new(StringComparer.Ordinal);
    private long _requests, _feedback, _errors, _user;
    private double _feedbackRate = 1;

    /// <summary>The share of answers users rate (0 to 1); may change while users run.</summary>
    public double FeedbackRate { get => Volatile.Read(ref _feedbackRate); set => Volatile.Write(ref _feedbackRate, value); }

    public long Requests => Interlocked.Read(ref _requests);
    public long Feedback => Interlocked.Read(ref _feedback);

    public string Describe() => $"{Requests} requests ({Interlocked.Read(ref _errors)} failed), {Feedback} feedback items; answers right by version: "
        + string.Join(", ", _byVersion.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {(double)p.Value.Correct / Math.Max(1, p.Value.Requests):P0} of {p.Value.Requests}"));

    /// <summary>Users send tickets until cancelled, rating <see cref="FeedbackRate"/> of the answers.</summary>
    public async Task RunAsync(int users, FeedbackMode mode, CancellationToken ct)
    {
        var tasks = Enumerable.Range(0, users).Select(async u =>
        {
            var random = new Random(seed * 1000 + u);
            while (!ct.IsCancellationRequested)
            {
                var vocabulary = random.NextDouble() < newShare ? TicketTask.NewVocabulary : TicketTask.OldVocabulary;
                var ticket = TicketTask.Sample(vocabulary, 1, random.Next()).Single();
                try
                {
                    await AskAsync(ticket, mode, random.NextDouble() < FeedbackRate, ct);
                    await Task.Delay(random.Next(5, 25), ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
            }
        });
        await Task.WhenAll(tasks);
    }

    /// <summary>Sends each ticket once (spread over <paramref name="parallelism"/> users), with feedback.</summary>
    public Task SendBatchAsync(IReadOnlyList<TrainingExample> tickets, FeedbackMode mode, int parallelism, CancellationToken ct) =>
        Parallel.ForEachAsync(tickets, new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = ct }, (ticket, token) => new ValueTask(AskAsync(ticket, mode, true, token)));

    private async Task AskAsync(TrainingExample ticket, FeedbackMode mode, bool rate, CancellationToken ct)
    {
        // A new user id per request: the alias's sticky split then follows its weights closely.
        string user = $"user-{seed}-{Interlocked.Increment(ref _user)}";
        Interlocked.Increment(ref _requests);
        using var response = await http.PostAsJsonAsync("v1/completions", new { model = ClosedLoopDemo.Adapter, prompt = ticket.Prompt, max_tokens = ClosedLoopDemo.AnswerTokens, temperature = 0, user }, ct);
        if (!response.IsSuccessStatusCode)
        {
            Interlocked.Increment(ref _errors);
            return;
        }
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        string id = body.RootElement.GetProperty("id").GetString()!;
        string text = body.RootElement.GetProperty("choices")[0].GetProperty("text").GetString() ?? "";
        string version = response.Headers.TryGetValues(WireHeaders.Arm, out var arms) ? arms.First() : "?";
        bool right = Evaluator.IsMatch(text, ticket.Completion);
        _byVersion.AddOrUpdate(version, (1, right ? 1 : 0), (_, v) => (v.Requests + 1, v.Correct + (right ? 1 : 0)));
        if (!rate) return;
        var feedback = new JsonObject { ["id"] = id };
        if (mode == FeedbackMode.Corrupted)
        {
            feedback["rating"] = -1;
            feedback["correction"] = TicketTask.Corrupt(ticket.Completion);
        }
        else if (right)
        {
            feedback["rating"] = 1;
        }
        else
        {
            feedback["rating"] = -1;
            feedback["correction"] = ticket.Completion;
        }
        using var sent = await http.PostAsync("v1/feedback", JsonContent.Create(feedback), ct);
        if (sent.IsSuccessStatusCode) Interlocked.Increment(ref _feedback);
        else Interlocked.Increment(ref _errors);
    }
}

/// <summary>Stops a web application's hosted services when disposed.</summary>
internal sealed class AsyncStop(WebApplication app) : IAsyncDisposable
{
    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await app.StopAsync(timeout.Token);
    }
}

/// <summary>The demo's last line: one JSON object.</summary>
internal static class DemoJson
{
    public static string Format(DemoResult result) => JsonSerializer.Serialize(new JsonObject
    {
        ["accuracy_before"] = result.AccuracyBefore,
        ["accuracy_after"] = result.AccuracyAfter,
        ["promoted"] = result.Promoted,
        ["bad_candidate"] = result.BadCandidate,
        ["seconds"] = double.Parse(result.Seconds.ToString("F1", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
    });
}
