using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Serving;
using static TorchSharp.torch;

namespace TuneGateway.Tests.Engine;

/// <summary>
/// Continuous batching with per-row LoRA: concurrent requests over the base and several adapters
/// each get exactly the tokens they get alone; hot swap, unload, cancellation, bad adapters and
/// limits behave as documented while traffic runs.
/// </summary>
public sealed class SchedulerTests : IDisposable
{
    private readonly CausalLanguageModel _model = CausalLanguageModel.Load(Fixtures.LlamaTiny, torch.CPU, ScalarType.Float32);
    private readonly ReferenceFile _reference = Fixtures.LoadReference(Path.Combine(Fixtures.Root, "llama-tiny", "reference.json"));

    public void Dispose() => _model.Dispose();

    internal static async Task<(List<int> Ids, List<float> Logprobs, GenerationFinished Finished)> Collect(GenerationHandle handle)
    {
        var ids = new List<int>();
        var logprobs = new List<float>();
        GenerationFinished? finished = null;
        await foreach (var e in handle.Events.ReadAllAsync())
        {
            switch (e)
            {
                case TokenGenerated t: ids.Add(t.TokenId); logprobs.Add(t.Logprob); break;
                case GenerationFinished f: finished = f; break;
            }
        }
        return (ids, logprobs, finished ?? throw new InvalidOperationException("no finish event"));
    }

    private static GenerationRequest Greedy(int[] prompt, string? adapter, int tokens = 16) => new()
    {
        PromptIds = prompt,
        Adapter = adapter,
        Sampling = SamplingParams.Greedy(tokens) with { IgnoreEos = true },
    };

    private (Scheduler Scheduler, AdapterManager Adapters, ModelRunner Runner) Start(int maxNumSeqs = 4, int maxBatchTokens = 16, int maxQueue = 256,
        AdapterManagerOptions? adapterOptions = null)
    {
        var runner = new ModelRunner(_model, maxNumSeqs, 128);
        var adapters = new AdapterManager(_model, adapterOptions);
        var scheduler = new Scheduler(runner, adapters, new SchedulerOptions
        {
            MaxNumSeqs = maxNumSeqs,
            MaxBatchTokens = maxBatchTokens,
            MaxQueue = maxQueue,
            EosTokenIds = _model.Config.EosTokenIds,
        });
        return (scheduler, adapters, runner);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(64)]
    public async Task PromptScoresMatchTheReferenceLogprobsWhateverTheChunking(int maxBatchTokens)
    {
        // The reference prompt followed by its first eight greedy tokens: scoring that prompt must give
        // those tokens the log-probabilities Hugging Face computed when generating them, whether the
        // prefill runs in chunks of five tokens or in one.
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 2, maxBatchTokens: maxBatchTokens);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        var c = _reference.Cases["base"][0];
        int[] prompt = [.. c.PromptIds, .. c.GreedyIds[..8]];
        var request = Greedy(prompt, null, tokens: 2) with { Sampling = SamplingParams.Greedy(2) with { IgnoreEos = true, PromptLogprobs = 3 } };
        PromptScored? scored = null;
        int tokens = 0;
        await foreach (var e in scheduler.Submit(request).Events.ReadAllAsync())
        {
            if (e is PromptScored p) { Assert.Equal(0, tokens); scored = p; }
            if (e is TokenGenerated) tokens++;
        }
        Assert.NotNull(scored);
        Assert.Equal(prompt, scored!.TokenIds);
        Assert.Equal(prompt.Length, scored.Logprobs.Count);
        Assert.Null(scored.Logprobs[0]);
        Assert.Null(scored.TopLogprobs[0]);
        for (int j = 0; j < 8; j++)
            Assert.True(Math.Abs(c.GreedyLogprobs[j] - scored.Logprobs[c.PromptIds.Length + j]!.Value) < 1e-3, $"token {j}");
        // Greedy tokens were the most likely: each is its position's first alternative.
        for (int j = 0; j < 8; j++) Assert.Equal(c.GreedyIds[j], scored.TopLogprobs[c.PromptIds.Length + j]![0].TokenId);
        Assert.All(scored.TopLogprobs.Skip(1), top => Assert.Equal(3, top!.Count));
    }

    [Fact]
    public async Task ConcurrentRequestsOverBaseAndAdaptersGetTheirReferenceTokens()
    {
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 5, maxBatchTokens: 12);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        await adapters.LoadAsync("shout", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        await adapters.LoadAsync("reverse", Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"));

        // 3 variants x 4 prompts x 2 copies = 24 requests through 5 slots, 12 tokens per step:
        // queueing, chunked prefill and mixed-adapter decode rows all happen.
        var jobs = new List<(string Variant, ReferenceCase Case, Task<(List<int>, List<float>, GenerationFinished)> Result)>();
        for (int copy = 0; copy < 2; copy++)
            foreach (string variant in new[] { "base", "shout", "reverse" })
                foreach (var c in _reference.Cases[variant])
                    jobs.Add((variant, c, Collect(scheduler.Submit(Greedy(c.PromptIds, variant == "base" ? null : variant)))));

        foreach (var (variant, expected, result) in jobs)
        {
            var (ids, logprobs, finished) = await result;
            Assert.Equal(FinishReason.Length, finished.Reason);
            Assert.True(expected.GreedyIds.SequenceEqual(ids), $"{variant}: expected [{string.Join(",", expected.GreedyIds)}], got [{string.Join(",", ids)}]");
            ParityTests.AssertClose(expected.GreedyLogprobs, logprobs.ToArray(), $"{variant} logprobs");
        }
        Assert.Equal(0, scheduler.Stats.Running);
        Assert.True(scheduler.Stats.Steps > 16, "the requests must have shared steps");
    }

    [Fact]
    public async Task AdaptersOfDifferentRanksAndTargetsShareABatch()
    {
        using var model = CausalLanguageModel.Load(Path.Combine(Fixtures.Models, "mistral-f32"), torch.CPU, ScalarType.Float32);
        var reference = Fixtures.LoadReference(Path.Combine(Fixtures.Models, "mistral-f32", "reference.json"));
        using var runner = new ModelRunner(model, 6, 512);
        using var adapters = new AdapterManager(model);
        using var scheduler = new Scheduler(runner, adapters, new SchedulerOptions { MaxNumSeqs = 6, MaxBatchTokens = 512 });
        await adapters.LoadAsync("patterns", Path.Combine(Fixtures.Models, "mistral-f32", "adapters", "patterns"));
        await adapters.LoadAsync("regex", Path.Combine(Fixtures.Models, "mistral-f32", "adapters", "regex"));

        var jobs = new[] { "base", "patterns", "regex" }
            .SelectMany(v => reference.Cases[v].Take(2).Select(c => (v, c, Collect(scheduler.Submit(Greedy(c.PromptIds, v == "base" ? null : v))))))
            .ToArray();
        foreach (var (variant, expected, result) in jobs)
        {
            var (ids, _, _) = await result;
            Assert.True(expected.GreedyIds.SequenceEqual(ids), $"{variant}: expected [{string.Join(",", expected.GreedyIds)}], got [{string.Join(",", ids)}]");
        }
    }

    [Fact]
    public async Task ReplacingAnAdapterIsAtomicAndRequestsInFlightKeepTheirVersion()
    {
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 4, maxBatchTokens: 64);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        await adapters.LoadAsync("bot", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        var shout = _reference.Cases["shout"][0];
        var reverse = _reference.Cases["reverse"][0];

        // Long enough to still be running when the name is replaced.
        using var gate = new StepGate(scheduler, s => s.Running == 3 && s.GeneratedTokens >= 6);
        var before = Enumerable.Range(0, 3).Select(_ => scheduler.Submit(Greedy(shout.PromptIds, "bot", 100))).ToArray();
        await gate.Reached;
        await adapters.LoadAsync("bot", Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"));
        var after = scheduler.Submit(Greedy(reverse.PromptIds, "bot"));
        gate.Release();

        foreach (var handle in before)
        {
            var (ids, _, finished) = await Collect(handle);
            Assert.Equal(shout.GreedyIds, ids.Take(16));
            Assert.EndsWith(Path.Combine("adapters", "shout"), finished.AdapterPath);
        }
        var (afterIds, _, afterFinished) = await Collect(after);
        Assert.Equal(reverse.GreedyIds, afterIds);
        Assert.EndsWith(Path.Combine("adapters", "reverse"), afterFinished.AdapterPath);
    }

    [Fact]
    public async Task UnloadWaitsForRunningRequestsOrAbortsThem()
    {
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 4, maxBatchTokens: 64);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        var shout = _reference.Cases["shout"][0];

        await adapters.LoadAsync("a", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        var gate = new StepGate(scheduler, s => s.Running == 1 && s.GeneratedTokens >= 2);
        var waiting = scheduler.Submit(Greedy(shout.PromptIds, "a", 100));
        await gate.Reached;
        Assert.True(adapters.Unload("a", UnloadMode.Wait));
        Assert.Throws<UnknownAdapterException>(() => scheduler.Submit(Greedy(shout.PromptIds, "a")));
        gate.Dispose();
        var (ids, _, finished) = await Collect(waiting);
        Assert.Equal(FinishReason.Length, finished.Reason);
        Assert.Equal(shout.GreedyIds, ids.Take(16));

        await adapters.LoadAsync("b", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        long generated = scheduler.Stats.GeneratedTokens;
        using var abortGate = new StepGate(scheduler, s => s.Running == 1 && s.GeneratedTokens >= generated + 2);
        var aborted = scheduler.Submit(Greedy(shout.PromptIds, "b", 110));
        await abortGate.Reached;
        Assert.True(adapters.Unload("b", UnloadMode.Abort));
        abortGate.Release();
        var (abortedIds, _, abortedFinish) = await Collect(aborted);
        Assert.Equal(FinishReason.Error, abortedFinish.Reason);
        Assert.Contains("unloaded", abortedFinish.Error);
        Assert.True(abortedIds.Count < 110);
    }

    [Fact]
    public async Task CorruptAndMismatchedAdaptersAreRejectedWhileTrafficContinues()
    {
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 4, maxBatchTokens: 64);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        await adapters.LoadAsync("bot", Path.Combine(Fixtures.LlamaTinyAdapters, "shout"));
        var shout = _reference.Cases["shout"][2];
        var traffic = Enumerable.Range(0, 6).Select(_ => scheduler.Submit(Greedy(shout.PromptIds, "bot", 60))).ToArray();

        using var dir = new TempDirectory();
        // Truncated weights file.
        string corrupt = dir.Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"), "corrupt");
        string weights = Path.Combine(corrupt, "adapter_model.safetensors");
        File.WriteAllBytes(weights, File.ReadAllBytes(weights)[..4000]);
        var ex1 = await Assert.ThrowsAsync<AdapterLoadException>(() => adapters.LoadAsync("bot", corrupt));
        Assert.Contains("adapter_model.safetensors", ex1.Message);

        // Trained for another base (hidden 64 instead of 128).
        string mismatched = Path.Combine(Fixtures.Models, "mistral-f32", "adapters", "regex");
        var ex2 = await Assert.ThrowsAsync<AdapterLoadException>(() => adapters.LoadAsync("bot", mismatched));
        Assert.Contains("lora_A.weight", ex2.Message);
        Assert.Contains("[4, 64]", ex2.Message);
        Assert.Contains("[4, 128]", ex2.Message);

        // DoRA is refused by name.
        string dora = dir.Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"), "dora");
        string config = Path.Combine(dora, "adapter_config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"use_dora\": false", "\"use_dora\": true"));
        var ex3 = await Assert.ThrowsAsync<AdapterLoadException>(() => adapters.LoadAsync("bot", dora));
        Assert.Contains("use_dora", ex3.Message);

        // The name still serves the version it had, and traffic finished normally.
        Assert.EndsWith(Path.Combine("adapters", "shout"), adapters.Find("bot")!.Path);
        foreach (var handle in traffic)
        {
            var (ids, _, finished) = await Collect(handle);
            Assert.Equal(FinishReason.Length, finished.Reason);
            Assert.Equal(shout.GreedyIds, ids.Take(16));
        }
        var (again, _, _) = await Collect(scheduler.Submit(Greedy(shout.PromptIds, "bot")));
        Assert.Equal(shout.GreedyIds, again);
    }

    [Fact]
    public async Task CancellingARequestFreesItsSlot()
    {
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 1, maxBatchTokens: 16);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        using var cts = new CancellationTokenSource();
        var prompt = _reference.Cases["base"][0].PromptIds;
        using var gate = new StepGate(scheduler, s => s.Running == 1 && s.GeneratedTokens > 2);
        var cancelled = scheduler.Submit(Greedy(prompt, null, 110), cts.Token);
        var next = scheduler.Submit(Greedy(prompt, null));
        await gate.Reached;
        cts.Cancel();
        gate.Release();
        var (_, _, finished) = await Collect(cancelled);
        Assert.Equal(FinishReason.Abort, finished.Reason);
        var (ids, _, nextFinished) = await Collect(next);
        Assert.Equal(FinishReason.Length, nextFinished.Reason);
        Assert.Equal(_reference.Cases["base"][0].GreedyIds, ids);
    }

    [Fact]
    public void LimitsGiveClearErrors()
    {
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 1, maxBatchTokens: 16, maxQueue: 2);
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;
        var prompt = _reference.Cases["base"][0].PromptIds;

        var tooLong = Assert.Throws<RequestTooLongException>(() => scheduler.Submit(Greedy(prompt, null, 200)));
        Assert.Contains("maximum context length is 128 tokens", tooLong.Message);
        Assert.Throws<UnknownAdapterException>(() => scheduler.Submit(Greedy(prompt, "nobody")));
        Assert.Throws<ArgumentException>(() => scheduler.Submit(new GenerationRequest { PromptIds = prompt, Sampling = new SamplingParams { TopP = 0 } }));

        using var cts = new CancellationTokenSource();
        var accepted = Enumerable.Range(0, 2).Select(_ => scheduler.Submit(Greedy(prompt, null, 100), cts.Token)).ToList();
        // One may already be running; fill the queue until it refuses.
        var full = Assert.Throws<QueueFullException>(() =>
        {
            for (int i = 0; i < 3; i++) accepted.Add(scheduler.Submit(Greedy(prompt, null, 100), cts.Token));
        });
        Assert.Equal(2, full.Capacity);
        cts.Cancel();
    }

    [Fact]
    public async Task AdaptersLoadOnDemandFromTheLoraDirectoryAndAreEvictedByBytes()
    {
        using var dir = new TempDirectory();
        dir.Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "shout"), "shout");
        dir.Copy(Path.Combine(Fixtures.LlamaTinyAdapters, "reverse"), "reverse");
        long shoutBytes, reverseBytes;
        using (var a = LoraAdapter.Load(Path.Combine(dir.Path, "shout"), _model, 64, torch.CPU)) shoutBytes = a.Bytes;
        using (var b = LoraAdapter.Load(Path.Combine(dir.Path, "reverse"), _model, 64, torch.CPU)) reverseBytes = b.Bytes;

        // Room on the "device" for either adapter, not both: they must take turns.
        var (scheduler, adapters, runner) = Start(maxNumSeqs: 4, maxBatchTokens: 64, adapterOptions: new AdapterManagerOptions
        {
            LoraDirectory = dir.Path,
            MaxLoras = 4,
            LoraDeviceMemory = Math.Max(shoutBytes, reverseBytes) + Math.Min(shoutBytes, reverseBytes) / 2,
        });
        using var _ = scheduler; using var __ = adapters; using var ___ = runner;

        var shout = _reference.Cases["shout"][1];
        var reverse = _reference.Cases["reverse"][1];
        var jobs = new[]
        {
            (shout, Collect(scheduler.Submit(Greedy(shout.PromptIds, "shout")))),
            (reverse, Collect(scheduler.Submit(Greedy(reverse.PromptIds, "reverse")))),
            (shout, Collect(scheduler.Submit(Greedy(shout.PromptIds, "shout")))),
        };
        foreach (var (expected, result) in jobs)
        {
            var (ids, _, finished) = await result;
            Assert.Null(finished.Error);
            Assert.Equal(expected.GreedyIds, ids);
        }
        var stats = adapters.Stats;
        Assert.True(stats.Evictions >= 1, "one adapter had to leave the device for the other");
        Assert.True(stats.DeviceBytes <= adapters.Options.LoraDeviceMemory);
        Assert.Equal(2, adapters.List().Count);
    }

}

/// <summary>
/// Holds the scheduler thread after the first step whose statistics satisfy a condition, so a
/// test can act at a known point of a running batch (replace, unload, cancel) without racing it.
/// </summary>
public sealed class StepGate : IDisposable
{
    private readonly Scheduler _scheduler;
    private readonly Func<SchedulerStats, bool> _condition;
    private readonly TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ManualResetEventSlim _release = new(false);
    private int _fired;

    public StepGate(Scheduler scheduler, Func<SchedulerStats, bool> condition)
    {
        _scheduler = scheduler;
        _condition = condition;
        scheduler.StepCompleted += OnStep;
    }

    public Task Reached => _reached.Task.WaitAsync(TimeSpan.FromSeconds(60));

    private void OnStep(SchedulerStats stats)
    {
        if (!_condition(stats) || Interlocked.Exchange(ref _fired, 1) == 1) return;
        _reached.SetResult();
        _release.Wait(TimeSpan.FromSeconds(60));
    }

    public void Release() => _release.Set();

    public void Dispose()
    {
        _scheduler.StepCompleted -= OnStep;
        _release.Set();
    }
}

/// <summary>A temporary directory removed on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("tunegw-test-").FullName;

    public string Copy(string source, string name)
    {
        string target = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(target);
        foreach (string file in Directory.GetFiles(source)) File.Copy(file, System.IO.Path.Combine(target, System.IO.Path.GetFileName(file)));
        return target;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
    }
}
