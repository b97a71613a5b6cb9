using System.Diagnostics;
using TorchSharp;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Inference.Paging;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Serving;
using static TorchSharp.torch;

namespace TuneGateway.Cli.Bench;

/// <summary>Settings of the KV cache benchmark.</summary>
internal sealed record KvBenchOptions
{
    public required string ModelName { get; init; }
    public required Func<int, CausalLanguageModel> Load { get; init; }
    public IReadOnlyList<int> Batches { get; init; } = [1, 8, 32];
    public int SystemPromptTokens { get; init; } = 2000;
    public int ContextTokens { get; init; } = 128;
    public int DecodeSteps { get; init; } = 16;
    public int CapacityRequests { get; init; } = 48;
    public int CapacityMaxModelLen { get; init; } = 2048;
    public int CapacityBudgetSequences { get; init; } = 8;
}

/// <summary>
/// What the paged KV cache buys, measured in one process: (a) time to first token of a request
/// whose 2,000-token system prompt another request has already computed, against the first and
/// against the same request with prefix caching off; (b) how many sequences of mixed lengths run
/// at once in one KV budget, paged against what the contiguous layout (one max-length slot per
/// sequence) fits in it; (c) decode ms/step through block tables against the contiguous layout's
/// slot views, which <see cref="ContiguousDecode"/> keeps for this comparison only.
/// </summary>
internal static class KvBench
{
    public static async Task RunAsync(KvBenchOptions options, TextWriter output)
    {
        output.WriteLine($"KV cache on {options.ModelName}");
        output.WriteLine();
        await PrefixAsync(options, output);
        await CapacityAsync(options, output);
        DecodeStep(options, output);
    }

    private static async Task PrefixAsync(KvBenchOptions options, TextWriter output)
    {
        int system = options.SystemPromptTokens;
        using var model = options.Load(system + 256);
        var random = new Random(1);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => random.Next(10, Math.Min(model.Config.VocabSize, 30000))).ToArray();
        int[] shared = Tokens(system);
        var questions = Enumerable.Range(0, 4).Select(_ => Tokens(48)).ToArray();

        async Task<double> TimeToFirstToken(Scheduler scheduler, int[] question, int[]? system = null)
        {
            var request = new GenerationRequest { PromptIds = [.. system ?? shared, .. question], Sampling = SamplingParams.Greedy(1) with { IgnoreEos = true } };
            await foreach (var e in scheduler.Submit(request).Events.ReadAllAsync())
                if (e is GenerationFinished f) return f.Error is null ? f.Timings.TimeToFirstTokenSeconds * 1000 : throw new InvalidOperationException(f.Error);
            throw new InvalidOperationException("no finish event");
        }

        var table = new BenchTable(output, $"(a) {system}-token shared system prompt + 48-token question", "time to first token ms", "vs first request");
        double first = 0;
        foreach (bool caching in new[] { true, false })
        {
            using var runner = new ModelRunner(model, 4, system + 256);
            using var scheduler = new Scheduler(runner, null, new SchedulerOptions { MaxNumSeqs = 4, MaxBatchTokens = 2048, PrefixCaching = caching });
            await TimeToFirstToken(scheduler, Tokens(48), Tokens(system));          // warm-up on another prompt of the same length: kernels, allocator
            if (caching)
            {
                first = await TimeToFirstToken(scheduler, questions[0]);
                table.Row("first request (computes the prefix)", first, 1.0);
                var later = new List<double>();
                for (int i = 1; i < questions.Length; i++) later.Add(await TimeToFirstToken(scheduler, questions[i]));
                double median = later.Order().ElementAt(later.Count / 2);
                table.Row($"next requests, prefix cached (median of {later.Count}), {scheduler.Stats.PrefixHitTokens} tokens hit", median, median / first);
            }
            else
            {
                await TimeToFirstToken(scheduler, questions[0]);
                double again = await TimeToFirstToken(scheduler, questions[1]);
                table.Row("next request, prefix caching off", again, again / first);
            }
        }
        output.WriteLine();
    }

    private static async Task CapacityAsync(KvBenchOptions options, TextWriter output)
    {
        int maxLength = options.CapacityMaxModelLen;
        using var model = options.Load(maxLength);
        long budget = (long)options.CapacityBudgetSequences * maxLength * PagedKvCache.BytesPerToken(model.Config, model.Dtype);
        int blockSize = PagedKvCache.DefaultBlockSize;
        int blocks = (int)(budget / (PagedKvCache.BytesPerToken(model.Config, model.Dtype) * blockSize));
        using var runner = ModelRunner.WithBlocks(model, maxLength, blocks + 1, blockSize);
        using var scheduler = new Scheduler(runner, null, new SchedulerOptions { MaxNumSeqs = 256, MaxBatchTokens = 2048, MaxQueue = 4096, PrefixCaching = false });
        int peak = 0;
        scheduler.StepCompleted += s => peak = Math.Max(peak, s.Running);

        // Chat-like lengths: prompts of 32 to 1,024 tokens, 32 to 128 new ones, all under max-model-len.
        var random = new Random(2);
        var requests = Enumerable.Range(0, options.CapacityRequests).Select(_ => new GenerationRequest
        {
            PromptIds = Enumerable.Range(0, random.Next(32, 1025)).Select(_ => random.Next(10, 30000)).ToArray(),
            Sampling = SamplingParams.Greedy(random.Next(32, 129)) with { IgnoreEos = true },
        }).ToArray();
        double meanTokens = requests.Average(r => r.PromptIds.Count + r.Sampling.MaxTokens);
        var start = Stopwatch.GetTimestamp();
        var handles = requests.Select(r => scheduler.Submit(r)).ToArray();
        foreach (var h in handles)
            await foreach (var e in h.Events.ReadAllAsync())
                if (e is GenerationFinished { Error: { } error }) throw new InvalidOperationException(error);
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;

        var table = new BenchTable(output, $"(b) {options.CapacityRequests} requests, {meanTokens:0} tokens on average, KV budget {budget / (1 << 20)} MiB", "sequences at once", "vs contiguous");
        int contiguous = options.CapacityBudgetSequences;
        table.Row($"contiguous: one {maxLength}-token slot per sequence", contiguous, 1.0);
        table.Row($"paged, blocks of {blockSize} (peak running, measured; {scheduler.Stats.Preemptions} preemptions, {seconds:0.#} s)", peak, (double)peak / contiguous);
        output.WriteLine();
    }

    private static void DecodeStep(KvBenchOptions options, TextWriter output)
    {
        int context = options.ContextTokens, steps = options.DecodeSteps;
        using var model = options.Load(context + steps + 8);
        var table = new BenchTable(output, $"(c) decode step, {context}-token context", "batch", "contiguous ms/step", "paged ms/step", "paged / contiguous");
        foreach (int batch in options.Batches)
        {
            using var runner = new ModelRunner(model, batch, context + steps + 1);
            var tables = Enumerable.Range(0, batch).Select(_ => runner.ReserveSequence()).ToArray();
            using var contiguous = new ContiguousDecode(model, batch, context + steps + 1);
            double Paged()
            {
                var start = Stopwatch.GetTimestamp();
                for (int step = 0; step < steps; step++)
                {
                    var chunks = Enumerable.Range(0, batch).Select(i => new SequenceChunk(tables[i], context + step, new[] { 100 + i })).ToArray();
                    using var logits = runner.Forward(chunks);
                    EngineBench.Synchronize(model.Device);
                }
                return Stopwatch.GetElapsedTime(start).TotalMilliseconds / steps;
            }
            double Contiguous()
            {
                var start = Stopwatch.GetTimestamp();
                for (int step = 0; step < steps; step++)
                {
                    using var logits = contiguous.Step(context + step);
                    EngineBench.Synchronize(model.Device);
                }
                return Stopwatch.GetElapsedTime(start).TotalMilliseconds / steps;
            }
            Paged(); Contiguous();                                                   // warm-up
            var paged = new List<double>();
            var slots = new List<double>();
            for (int round = 0; round < 3; round++) { slots.Add(Contiguous()); paged.Add(Paged()); }
            double p = paged.Order().ElementAt(1), c = slots.Order().ElementAt(1);
            table.Row("", batch, c, p, p / c);
        }
        output.WriteLine();
    }
}

/// <summary>
/// The contiguous KV layout the engine used before the paged cache, kept only as the decode
/// benchmark's baseline: [layers, slots, kv heads, max length, head dim], every sequence one
/// max-length slot, decode rows in consecutive slots attending over a view of the cache (no
/// gather). Decode rows only; the cache's contents are whatever is there (timing, not output).
/// </summary>
internal sealed class ContiguousDecode : IDisposable
{
    private readonly CausalLanguageModel _model;
    private readonly int _rows;
    private readonly Tensor _keys;    // [layers, slots, Hkv, L, D]
    private readonly Tensor _values;

    public ContiguousDecode(CausalLanguageModel model, int rows, int maxLength)
    {
        _model = model;
        _rows = rows;
        var c = model.Config;
        _keys = torch.zeros([c.NumLayers, rows, c.NumKeyValueHeads, maxLength, c.HeadDim], model.Dtype, model.Device);
        _values = torch.zeros_like(_keys);
    }

    /// <summary>One decode step of every row at <paramref name="position"/>; logits [rows, vocab].</summary>
    public Tensor Step(int position)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var device = _model.Device;
        var ids = torch.arange(100, 100 + _rows, dtype: ScalarType.Int64, device: device);
        var positions = torch.full([_rows], position, ScalarType.Int64, device: device);
        var lengths = positions + 1;
        var rows = torch.arange(_rows, dtype: ScalarType.Int64, device: device);
        var backend = new Backend(_keys, _values, rows, positions, position + 1);
        return _model.Forward(ids, positions, lengths, backend, null, rows).MoveToOuterDisposeScope();
    }

    private sealed class Backend(Tensor keys, Tensor values, Tensor slots, Tensor positions, int length) : IAttentionBackend
    {
        public Tensor Attend(int layer, Tensor q, Tensor k, Tensor v, AttentionSpec spec)
        {
            long rows = q.shape[0];
            int hkv = spec.KeyValueHeads, g = spec.GroupSize, d = spec.HeadDim;
            var layerKeys = keys[layer];                                              // [slots, Hkv, L, D]
            var layerValues = values[layer];
            layerKeys.index_put_(k, TensorIndex.Tensor(slots), TensorIndex.Colon, TensorIndex.Tensor(positions));
            layerValues.index_put_(v, TensorIndex.Tensor(slots), TensorIndex.Colon, TensorIndex.Tensor(positions));
            var qd = q.view(rows, hkv, g, d);                                         // [rows, Hkv, G, D]
            var kd = layerKeys.narrow(0, 0, rows).narrow(2, 0, length);               // [rows, Hkv, length, D]
            var vd = layerValues.narrow(0, 0, rows).narrow(2, 0, length);
            var mask = torch.ones([rows, 1, 1, length], ScalarType.Bool, q.device);
            return AttentionKernel.Attend(qd, kd, vd, mask, causal: false, spec).reshape(rows, spec.Heads * d); // [rows, Hq·D]
        }
    }

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
