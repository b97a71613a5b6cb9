using System.Diagnostics;
using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Inference.Paging;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Runtime;
using TuneGateway.Engine.Serving;
using static TorchSharp.torch;

namespace TuneGateway.Cli.Bench;

/// <summary>Settings of the engine and LoRA benchmarks.</summary>
internal sealed record EngineBenchOptions
{
    public required Device Device { get; init; }
    public required ScalarType Dtype { get; init; }
    public required IReadOnlyList<(string Name, Func<CausalLanguageModel> Load)> Models { get; init; }
    public IReadOnlyList<int> Batches { get; init; } = [1, 8, 32];
    public int PromptTokens { get; init; } = 128;
    public int NewTokens { get; init; } = 64;
    public int LoraBatch { get; init; } = 32;
    public int LoraRank { get; init; } = 16;
    public bool Lora { get; init; } = true;
    public bool EngineTable { get; init; } = true;
}

/// <summary>
/// Prefill and decode throughput of the engine, and the cost of serving many LoRA adapters in
/// one batch, measured in one process so that ratios compare like with like.
/// </summary>
internal static class EngineBench
{
    private static readonly string[] AllProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>The Qwen2.5-0.5B shape with random weights.</summary>
    public static ModelConfig Qwen05BShape() => new()
    {
        Architecture = ModelArchitecture.Qwen2,
        ModelType = "qwen2",
        HiddenSize = 896,
        IntermediateSize = 4864,
        NumLayers = 24,
        NumHeads = 14,
        NumKeyValueHeads = 2,
        HeadDim = 64,
        VocabSize = 151936,
        RmsNormEps = 1e-6,
        MaxPositionEmbeddings = 32768,
        TieWordEmbeddings = true,
        QkvBias = true,
        OutputBias = false,
        MlpBias = false,
        Rope = new RopeParameters(1000000.0, RopeType.Default),
    };

    /// <summary>The Qwen3-0.6B shape with random weights (q/k norms, head_dim 128 over hidden 1024, tied head).</summary>
    public static ModelConfig Qwen3Dense06BShape() => Qwen05BShape() with
    {
        Architecture = ModelArchitecture.Qwen3,
        ModelType = "qwen3",
        HiddenSize = 1024,
        IntermediateSize = 3072,
        NumLayers = 28,
        NumHeads = 16,
        NumKeyValueHeads = 8,
        HeadDim = 128,
        MaxPositionEmbeddings = 40960,
        QkvBias = false,
        QkNorm = true,
    };

    /// <summary>A small Qwen3-MoE shape: the 0.6B attention, 8 experts of 768, top-2, renormalised.</summary>
    public static ModelConfig SmallMoeShape() => Qwen3Dense06BShape() with
    {
        Architecture = ModelArchitecture.Qwen3Moe,
        ModelType = "qwen3_moe",
        Moe = new MoeConfig(Experts: 8, TopK: 2, NormalizeTopK: true, IntermediateSize: 768),
    };

    public static async Task RunAsync(EngineBenchOptions options, TextWriter output)
    {
        output.WriteLine($"device: {options.Device}, dtype: {TorchRuntime.DtypeName(options.Dtype)}, {TorchRuntime.BackendDescription}, {Environment.ProcessorCount} CPU cores");
        output.WriteLine($"prompt {options.PromptTokens} tokens, {options.NewTokens} new tokens per sequence, greedy");
        output.WriteLine();

        using (var first = options.Models[0].Load())
            WarmUp(first, options.Device.type == DeviceType.CUDA ? TimeSpan.FromSeconds(20) : TimeSpan.FromSeconds(2));

        if (options.EngineTable)
        {
            var table = new BenchTable(output, "model", "batch", "prefill tok/s", "decode tok/s", "decode ms/step");
            foreach (var (name, load) in options.Models)
            {
                using var model = load();
                foreach (int batch in options.Batches)
                {
                    var (prefill, decode, stepMs) = Throughput(model, batch, options.PromptTokens, options.NewTokens, null, _ => -1);
                    table.Row(name, batch, prefill, decode, stepMs);
                }
            }
            output.WriteLine();
        }

        if (options.Lora)
        {
            var (name, load) = options.Models[^1];
            using var model = load();
            await LoraAsync(model, name, options, output);
        }
    }

    /// <summary>Prefill then decode a batch of random prompts; tokens per second of each phase.</summary>
    internal static (double Prefill, double Decode, double StepMs) Throughput(CausalLanguageModel model, int batch, int promptTokens, int newTokens,
        LoraWorkingSet? set, Func<int, int> adapterOfRow)
    {
        using var runner = new ModelRunner(model, batch, promptTokens + newTokens + 1);
        var tables = Enumerable.Range(0, batch).Select(_ => runner.ReserveSequence()).ToArray();
        var random = new Random(batch);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => Enumerable.Range(0, promptTokens).Select(_ => random.Next(10, Math.Min(model.Config.VocabSize, 30000))).ToArray())
            .ToArray();
        var greedy = Enumerable.Repeat(new RowSampling(0, 0, 1, 0, 0), batch).ToArray();

        // Warm-up: allocator, kernels, first-call costs; then the median of three timed runs.
        RunOnce(runner, tables, prompts, greedy, Math.Min(4, newTokens), set, adapterOfRow);
        var runs = Enumerable.Range(0, 3).Select(_ => RunOnce(runner, tables, prompts, greedy, newTokens, set, adapterOfRow)).ToArray();
        var prefill = runs.Select(r => r.Prefill).Order().ElementAt(1);
        var decode = runs.Select(r => r.Decode).Order().ElementAt(1);
        double prefillRate = batch * promptTokens / prefill.TotalSeconds;
        double decodeRate = batch * (newTokens - 1) / decode.TotalSeconds;
        return (prefillRate, decodeRate, decode.TotalMilliseconds / (newTokens - 1));
    }

    /// <summary>
    /// Runs decode steps for a while before anything is measured: the JIT promotes the hot paths
    /// to optimized code and the device reaches its working clocks (first runs on a fresh GPU host
    /// were several times slower than later ones).
    /// </summary>
    internal static void WarmUp(CausalLanguageModel model, TimeSpan duration)
    {
        var start = Stopwatch.GetTimestamp();
        // 16-token prompts and decodes, or shorter when the model was sized for shorter runs.
        int tokens = Math.Min(16, (model.MaxPositions - 1) / 2);
        while (Stopwatch.GetElapsedTime(start) < duration)
            Throughput(model, 8, tokens, tokens, null, _ => -1);
    }

    private static (TimeSpan Prefill, TimeSpan Decode) RunOnce(ModelRunner runner, BlockTables[] tables, int[][] prompts, RowSampling[] greedy, int newTokens,
        LoraWorkingSet? set, Func<int, int> adapterOfRow)
    {
        int batch = prompts.Length;
        var start = Stopwatch.GetTimestamp();
        var tokens = runner.Step(prompts.Select((p, i) => new SequenceChunk(tables[i], 0, p, Adapter: adapterOfRow(i))).ToArray(), greedy, set);
        var prefill = Stopwatch.GetElapsedTime(start);

        start = Stopwatch.GetTimestamp();
        var chunks = new SequenceChunk[batch];
        for (int step = 1; step < newTokens; step++)
        {
            for (int i = 0; i < batch; i++)
                chunks[i] = new SequenceChunk(tables[i], prompts[i].Length + step - 1, new[] { tokens[i].TokenId }, Adapter: adapterOfRow(i));
            tokens = runner.Step(chunks, greedy, set);
        }
        return (prefill, Stopwatch.GetElapsedTime(start));
    }

    private static async Task LoraAsync(CausalLanguageModel model, string modelName, EngineBenchOptions options, TextWriter output)
    {
        int batch = options.LoraBatch;
        using var directory = new TemporaryDirectory();
        int maxAdapters = Math.Max(32, batch);
        var adapters = new List<LoraAdapter>();
        try
        {
            for (int i = 0; i < maxAdapters; i++)
            {
                string path = Path.Combine(directory.Path, $"a{i}");
                PeftWriter.WriteRandom(path, model, options.LoraRank, AllProjections, seed: 1000 + i);
                using var host = LoraAdapter.Load(path, model, options.LoraRank, CPU);
                adapters.Add(host.CopyTo(model.Device));
            }

            output.WriteLine($"LoRA on {modelName}: rank {options.LoraRank}, all seven projections, random weights, batch {batch}, {options.NewTokens} new tokens");
            double Decode(IReadOnlyList<LoraAdapter> used, Func<int, int> rowAdapter)
            {
                using var set = used.Count > 0 ? new LoraWorkingSet(used, model.LinearGroups.Count, model.Device) : null;
                return Throughput(model, batch, options.PromptTokens, options.NewTokens, set, rowAdapter).Decode;
            }

            // Cases are measured in interleaved rounds and reported as medians, so that drift of
            // the machine's speed during the run (seen on the GPU host) hits every case alike.
            var cases = new (string Name, Func<double> Run)[]
            {
                ("(a) no adapter", () => Decode([], _ => -1)),
                ("(b) one adapter", () => Decode(adapters.Take(1).ToArray(), _ => 0)),
                ("(c) 8 adapters mixed", () => Decode(adapters.Take(8).ToArray(), i => i % 8)),
                ("(d) 32 adapters mixed", () => Decode(adapters.Take(32).ToArray(), i => i % 32)),
                ("(e) merge-and-swap, 8 adapters", () => MergeAndSwap(model, adapters.Take(8).ToArray(), batch, options.PromptTokens, options.NewTokens)),
            };
            var samples = cases.Select(_ => new List<double>()).ToArray();
            for (int round = 0; round < 3; round++)
                for (int i = 0; i < cases.Length; i++) samples[i].Add(cases[i].Run());
            var medians = samples.Select(s => s.Order().ElementAt(s.Count / 2)).ToArray();
            double none = medians[0], eight = medians[2], all = medians[3], swap = medians[4];

            var table = new BenchTable(output, "case", "decode tok/s (median of 3 rounds)", "vs no adapter");
            for (int i = 0; i < cases.Length; i++) table.Row(cases[i].Name, medians[i], medians[i] / none);
            output.WriteLine();
            output.WriteLine($"c/a = {eight / none:0.###}, d/a = {all / none:0.###}, c/e = {eight / swap:0.###}");

            double coldSeconds = await ColdLoadAsync(model, directory.Path, options);
            output.WriteLine($"cold load of a rank-{options.LoraRank} adapter, disk to first token: {coldSeconds * 1000:0.#} ms");
        }
        finally
        {
            foreach (var a in adapters) a.Dispose();
        }
    }

    /// <summary>
    /// The same traffic served by merging one adapter into the base weights at a time, decoding
    /// its rows, and unmerging: the way to serve without per-row LoRA. Counts decode time and
    /// merge/unmerge time.
    /// </summary>
    private static double MergeAndSwap(CausalLanguageModel model, IReadOnlyList<LoraAdapter> adapters, int batch, int promptTokens, int newTokens)
    {
        int perAdapter = Math.Max(1, batch / adapters.Count);
        double seconds = 0;
        long tokens = 0;
        foreach (var adapter in adapters)
        {
            var start = Stopwatch.GetTimestamp();
            LoraMerge.Apply(model, adapter);
            Synchronize(model.Device);
            seconds += Stopwatch.GetElapsedTime(start).TotalSeconds;

            var (_, decodeRate, _) = Throughput(model, perAdapter, promptTokens, newTokens, null, _ => -1);
            seconds += perAdapter * (newTokens - 1) / decodeRate;
            tokens += perAdapter * (newTokens - 1);

            start = Stopwatch.GetTimestamp();
            LoraMerge.Apply(model, adapter, sign: -1);
            Synchronize(model.Device);
            seconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        return tokens / seconds;
    }

    internal static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }

    private static async Task<double> ColdLoadAsync(CausalLanguageModel model, string directory, EngineBenchOptions options)
    {
        string path = Path.Combine(directory, "cold");
        PeftWriter.WriteRandom(path, model, options.LoraRank, AllProjections, seed: 7);
        using var runner = new ModelRunner(model, 2, options.PromptTokens + 8);
        using var manager = new AdapterManager(model, new AdapterManagerOptions { MaxLoraRank = options.LoraRank });
        using var scheduler = new Scheduler(runner, manager, new SchedulerOptions { MaxNumSeqs = 2, MaxBatchTokens = Math.Max(2, options.PromptTokens) });
        var prompt = Enumerable.Range(100, options.PromptTokens).ToArray();
        // Warm the base path first so the measurement is the adapter's cost.
        await DrainAsync(scheduler.Submit(new GenerationRequest { PromptIds = prompt, Sampling = SamplingParams.Greedy(1) }));

        var start = Stopwatch.GetTimestamp();
        await manager.LoadAsync("cold", path);
        await DrainAsync(scheduler.Submit(new GenerationRequest { PromptIds = prompt, Sampling = SamplingParams.Greedy(1), Adapter = "cold" }));
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static async Task DrainAsync(GenerationHandle handle)
    {
        await foreach (var e in handle.Events.ReadAllAsync())
        {
            if (e is GenerationFinished { Error: { } error }) throw new InvalidOperationException(error);
        }
    }
}

/// <summary>A temporary directory removed on dispose.</summary>
internal sealed class TemporaryDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("tunegw-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
    }
}
