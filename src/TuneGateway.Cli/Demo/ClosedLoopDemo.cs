using TuneGateway.Storage;
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
using TuneGateway.Cli.Hosting;
using TuneGateway.Gateway;
using TuneGateway.Gateway.Proxy;
using TuneGateway.Gateway.Lifecycle;
using TuneGateway.Worker;
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
    /// <summary>Give up after this long.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(12);
    public bool Verbose { get; init; }
}

/// <summary>The demo's last line.</summary>
/// <param name="CanaryTickets">Tickets the users sent while the winning candidate's canary ran.</param>
internal sealed record DemoResult(double? AccuracyBefore, double? AccuracyAfter, string? Promoted, string? BadCandidate, int? CanaryTickets, double Seconds);

/// <summary>The demo cannot go on (the loop did not do what it shows).</summary>
internal sealed class DemoFailedException(string message) : Exception(message);

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
    /// <summary>Feedback items that start a run; also the size of a round of user traffic.</summary>
    private const int FeedbackTrigger = 150;
    /// <summary>Tickets between two checks of a running canary.</summary>
    private const int CanaryRound = 40;
    private const int MaxRetrainRounds = 4;
    private const int MaxCanaryRounds = 25;

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
        int? canaryTickets = null;
        DemoResult Result() => new(before, after, promoted, bad, canaryTickets, Math.Round(_clock.Elapsed.TotalSeconds, 1));
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

            // 3. The product changes: tickets use new words; users rate answers and correct wrong ones. Each
            //    round is exactly the feedback trigger's worth of tickets; then the users wait for the run it fires.
            var users = new TrafficSimulation(http, options.Seed, newShare: 0.8);
            var monitor = app.Services.GetRequiredService<CanaryMonitor>();
            RegisteredVersion? winner = null;
            bool paused = false;
            for (int round = 1; winner is null; round++)
            {
                if (round > MaxRetrainRounds) throw new DemoFailedException($"no retrained version won its canary in {MaxRetrainRounds} rounds of traffic");
                var known = await RunIdsAsync(history, ct);
                await users.SendAsync(FeedbackTrigger, FeedbackMode.Honest, ct);
                Say($"round {round}: users sent {FeedbackTrigger} tickets (80 % in the new vocabulary), rated each answer and corrected the wrong ones");
                // Resumed only now, after a rolled-back canary: the feedback its users gave must not start a run before this round is in.
                if (paused) (await PostAsync(http, $"admin/pipelines/{Adapter}/resume", new { }, ct)).Dispose();
                paused = false;
                if (round == 1 && await app.Services.GetRequiredService<DriftMonitor>().CheckAsync(pipeline, ct) is { } drift)
                    Say(drift.Report.DriftDetected
                        ? $"drift on {Adapter}@{v1} against {drift.ReferenceSource}: {string.Join("; ", drift.Report.Alarms.Take(3))}"
                        : $"no drift alarm yet against {drift.ReferenceSource}");

                // 4. The loop: trigger → curate → train → gate → canary → promote.
                await WaitForRunAsync(history, lifecycle, known, ct);
                if (await lifecycle.CanaryAsync(Adapter, ct) is null)
                {
                    Say("the run ended without a canary; users send another round");
                    continue;
                }
                // No new candidate while this one is judged.
                (await PostAsync(http, $"admin/pipelines/{Adapter}/pause", new { }, ct)).Dispose();
                paused = true;
                Say("canary started: the pipeline is paused while it is judged");
                long sentBefore = users.Requests;
                winner = await JudgeCanaryAsync(users, monitor, pipeline, lifecycle, history, ct);
                canaryTickets = (int)(users.Requests - sentBefore);
            }
            promoted = winner.ModelName;
            var verdict = (await history.ListAsync(Adapter, 200, ct)).FirstOrDefault(r => r.Step == PipelineStep.Decide && r.Version == winner.Version);
            Say($"{promoted} promoted; {users.Describe()}");
            if (verdict?.Message is { } why) Say($"  canary verdict: {why}");
            after = await AccuracyAsync(http, promoted, newTickets, ct);
            double afterOld = await AccuracyAsync(http, promoted, oldTickets, ct);
            Say($"accuracy of {promoted}: {afterOld:P0} on old-vocabulary tickets, {after:P0} on the new vocabulary (was {before:P0})");

            // 5. A labelling bug: corrections with wrong queues, then the pipeline resumes and curates what came
            //    since the promotion (SinceProduction), which is just that batch.
            var corrupted = new TrafficSimulation(http, options.Seed + 1, newShare: 0.8);
            await corrupted.SendEachAsync(newTickets.Concat(newTickets).Concat(oldTickets).ToArray(), FeedbackMode.Corrupted, ct);
            Say($"a labelling bug sent {corrupted.Feedback} corrections that name the wrong queue; the pipeline resumes");
            var before5 = await RunIdsAsync(history, ct);
            (await PostAsync(http, $"admin/pipelines/{Adapter}/resume", new { }, ct)).Dispose();
            string badRun = await WaitForRunAsync(history, lifecycle, before5, ct);
            // Should the candidate pass the gate, honest users meet it in a canary, and their ratings decide it.
            if (await lifecycle.CanaryAsync(Adapter, ct) is not null) await JudgeCanaryAsync(users, monitor, pipeline, lifecycle, history, ct);
            var stopped = (await lifecycle.Registry.ListVersionsAsync(Adapter, ct)).FirstOrDefault(v => v.DatasetId == badRun)
                ?? throw new DemoFailedException("the run after the labelling bug trained no candidate");
            bad = stopped.State switch { VersionState.Rejected => "rejected", VersionState.RolledBack => "rolled_back", var other => LifecycleJson.Name(other) };
            Say($"{stopped.ModelName} {bad.Replace('_', ' ')}: {stopped.StateReason}");

            var production = await lifecycle.ProductionAsync(Adapter, ct);
            var route = await lifecycle.Aliases.GetAsync(Adapter, ct);
            Say($"production is {production?.ModelName}; the alias routes {string.Join(", ", route?.Arms.Select(a => $"{a.Model} {a.Weight:P0}") ?? [])}");
            string? failure = production?.ModelName != promoted ? $"production is {production?.ModelName}, not {promoted}"
                : route?.Arms.Any(a => a.Model == stopped.ModelName && a.Weight > 0) == true ? $"{stopped.ModelName} still takes traffic"
                : !(after > before) ? $"accuracy did not rise ({before:P0} → {after:P0})"
                : null;
            return (Result(), failure);
        }
        catch (DemoFailedException ex)
        {
            return (Result(), ex.Message);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return (Result(), $"the demo did not finish within {options.Timeout.TotalMinutes:F0} minutes");
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
        var app = ServeHost.Create(new WorkerOptions { Engine = engine }, new GatewayOptions(), settings,
            traffic: new TrafficLogSettings { RedisConnectionString = options.Redis, DataDirectory = data, Configure = o => o.KeyPrefix = prefix },
            lifecycle: new LifecycleSettings
            {
                RedisConnectionString = options.Redis,
                DataDirectory = data,
                ArtifactDirectory = artifacts,
                KeyPrefix = prefix,
            },
            controller: new ControllerHosting
            {
                // One evaluation request at a time: every answer is then computed in a batch of one, the same on any machine.
                Options = new ControllerOptions { BaseModelDirectory = BundledModel.Directory, ArtifactDirectory = artifacts, TrainingDevice = "cpu", EvaluationParallelism = 1 },
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
        // What was rated since the last promotion, repeats kept (a ticket asked often weighs more); not the parent's data: the
        // traffic carries both vocabularies (which is also why a corrupted batch alone would shape the next candidate).
        Data = new DataRules { SinceProduction = true, MinExamples = 60, MinScore = 0.5, Dedupe = false, MaxExamples = 3000, IncludeParentData = false },
        Split = new SplitSettings { Validation = 0.1, Holdout = 0.15 },
        Training = Training with { Epochs = 8 },
        Evaluation = new EvaluationSettings { MinImprovement = 0.05, GoldenSet = goldenSet, MaxGoldenRegression = 0.05, MaxTokens = AnswerTokens },
        Canary = new CanaryPlan
        {
            // The demo judges the canary itself after each round of tickets (JudgeCanaryAsync), so that the verdict falls
            // at the same count of observations on a quiet or a busy machine; the controller's own checks would come at
            // whatever count the clock found.
            CheckInterval = TimeSpan.FromHours(1),
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
        var result = await Evaluator.AccuracyAsync(new GatewayCompletionClient(http, apiKey: null), model, "demo", examples, AnswerTokens, parallelism: 1, ct);
        return Math.Round(result.Accuracy, 3);
    }

    private static async Task<HashSet<string>> RunIdsAsync(IJobHistory history, CancellationToken ct) =>
        [.. (await history.ListAsync(Adapter, 500, ct)).Select(r => r.RunId)];

    /// <summary>
    /// Waits for the next pipeline run (one not in <paramref name="known"/>) to end: a step failed,
    /// was skipped or cancelled, or its canary started. Returns its id. (The canary step is recorded
    /// as running just before the canary starts: the run has ended once the canary state exists.)
    /// </summary>
    private async Task<string> WaitForRunAsync(IJobHistory history, LifecycleManager lifecycle, HashSet<string> known, CancellationToken ct)
    {
        string? ended = null;
        await WaitForAsync(async () =>
        {
            var runs = (await history.ListAsync(Adapter, 500, ct)).Where(r => !known.Contains(r.RunId) && r.Trigger?.Kind != TriggerKind.CanaryCheck).GroupBy(r => r.RunId);
            foreach (var steps in runs)
            {
                bool stopped = steps.Any(r => r.Status is StepStatus.Failed or StepStatus.Skipped or StepStatus.Cancelled);
                bool inCanary = steps.Any(r => r.Step == PipelineStep.Canary) && await lifecycle.CanaryAsync(Adapter, ct) is { } canary && canary.RunId == steps.Key;
                if (stopped || inCanary) ended = steps.Key;
            }
            return ended is not null;
        }, "the pipeline run that the feedback starts", history, ct);
        return ended!;
    }

    /// <summary>
    /// Rounds of honest tickets, each followed by one check of the canary, until it is decided: the
    /// promoted candidate, or null when it was rolled back.
    /// </summary>
    private async Task<RegisteredVersion?> JudgeCanaryAsync(TrafficSimulation users, CanaryMonitor monitor, PipelineDefinition pipeline, LifecycleManager lifecycle,
        IJobHistory history, CancellationToken ct)
    {
        string candidate = (await lifecycle.CanaryAsync(Adapter, ct))!.Candidate;
        for (int round = 0; round < MaxCanaryRounds; round++)
        {
            await users.SendAsync(CanaryRound, FeedbackMode.Honest, ct);
            await monitor.CheckAsync(pipeline, ct);
            await PrintJobsAsync(history, ct);
            var version = (await lifecycle.Registry.GetAsync(Adapter, candidate, ct))!;
            if (version.State == VersionState.Production) return version;
            if (version.State is VersionState.RolledBack or VersionState.Rejected) return null;
        }
        throw new DemoFailedException($"the canary of {Adapter}@{candidate} was not decided after {MaxCanaryRounds * CanaryRound} tickets");
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

/// <summary>
/// Simulated users: tickets through the alias, answers rated and corrected through <c>/v1/feedback</c>.
/// One ticket at a time, in an order fixed by the seed: the log, the curated data and the canary's
/// observations are then the same on every run, however fast the machine is.
/// </summary>
internal sealed class TrafficSimulation(HttpClient http, int seed, double newShare)
{
    /// <summary>How often a rating is retried while the gateway has not logged its request yet (it logs after the response).</summary>
    private const int FeedbackAttempts = 50;
    private static readonly TimeSpan FeedbackRetryDelay = TimeSpan.FromMilliseconds(20);

    private readonly Random _random = new(seed);
    private readonly SortedDictionary<string, (long Requests, long Correct)> _byVersion = new(StringComparer.Ordinal);
    private long _user;

    public long Requests { get; private set; }
    public long Feedback { get; private set; }
    public long Errors { get; private set; }

    public string Describe() => $"{Requests} requests ({Errors} failed), {Feedback} feedback items; answers right by version: "
        + string.Join(", ", _byVersion.Select(p => $"{p.Key} {(double)p.Value.Correct / Math.Max(1, p.Value.Requests):P0} of {p.Value.Requests}"));

    /// <summary>Sends <paramref name="count"/> tickets drawn from the seed, each rated.</summary>
    public async Task SendAsync(int count, FeedbackMode mode, CancellationToken ct)
    {
        for (int i = 0; i < count; i++)
        {
            var vocabulary = _random.NextDouble() < newShare ? TicketTask.NewVocabulary : TicketTask.OldVocabulary;
            await AskAsync(TicketTask.Sample(vocabulary, 1, _random.Next()).Single(), mode, ct);
        }
    }

    /// <summary>Sends each ticket once, in order, each rated.</summary>
    public async Task SendEachAsync(IReadOnlyList<TrainingExample> tickets, FeedbackMode mode, CancellationToken ct)
    {
        foreach (var ticket in tickets) await AskAsync(ticket, mode, ct);
    }

    private async Task AskAsync(TrainingExample ticket, FeedbackMode mode, CancellationToken ct)
    {
        // A new user id per request: the alias's sticky split then follows its weights closely (and the same ids split the same way).
        string user = $"user-{seed}-{++_user}";
        Requests++;
        using var response = await http.PostAsJsonAsync("v1/completions", new { model = ClosedLoopDemo.Adapter, prompt = ticket.Prompt, max_tokens = ClosedLoopDemo.AnswerTokens, temperature = 0, user }, ct);
        if (!response.IsSuccessStatusCode)
        {
            Errors++;
            return;
        }
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        string id = body.RootElement.GetProperty("id").GetString()!;
        string text = body.RootElement.GetProperty("choices")[0].GetProperty("text").GetString() ?? "";
        string version = response.Headers.TryGetValues(WireHeaders.Arm, out var arms) ? arms.First() : "?";
        bool right = Evaluator.IsMatch(text, ticket.Completion);
        var seen = _byVersion.GetValueOrDefault(version);
        _byVersion[version] = (seen.Requests + 1, seen.Correct + (right ? 1 : 0));
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
        for (int attempt = 1; ; attempt++)
        {
            using var sent = await http.PostAsync("v1/feedback", JsonContent.Create(feedback), ct);
            if (sent.IsSuccessStatusCode) { Feedback++; return; }
            // 404: the gateway hands the request to its traffic log just after the response, and this user was quicker.
            if (sent.StatusCode != System.Net.HttpStatusCode.NotFound || attempt == FeedbackAttempts) { Errors++; return; }
            await Task.Delay(FeedbackRetryDelay, ct);
        }
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

/// <summary>
/// The demo's last line: one JSON object, the same for the same seed on any run (the time it took is
/// printed on the line before, not here).
/// </summary>
internal static class DemoJson
{
    public static string Format(DemoResult result) => JsonSerializer.Serialize(new JsonObject
    {
        ["accuracy_before"] = result.AccuracyBefore,
        ["accuracy_after"] = result.AccuracyAfter,
        ["promoted"] = result.Promoted,
        ["bad_candidate"] = result.BadCandidate,
        ["canary_tickets"] = result.CanaryTickets,
    });
}
