using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Inference.Paging;
using TuneGateway.Engine.Lora;

namespace TuneGateway.Engine.Serving;

/// <summary>A submitted request: its events, in order, ending with <see cref="GenerationFinished"/>.</summary>
public sealed class GenerationHandle
{
    internal GenerationHandle(string requestId, ChannelReader<GenerationEvent> events)
    {
        RequestId = requestId;
        Events = events;
    }

    public string RequestId { get; }
    public ChannelReader<GenerationEvent> Events { get; }
}

/// <summary>
/// Continuous batching over one <see cref="ModelRunner"/>: requests join the running batch at
/// step boundaries (FCFS among those whose adapter is ready and whose first blocks are free),
/// long prompts are prefilled in chunks within a token budget per step so decoding never stalls,
/// finished sequences leave at once, and every row of a step may use a different adapter. The KV
/// cache is paged: sequences take blocks as they grow, share cached prefixes computed under the
/// same adapter version, and when a decode step finds no free block the newest sequences are
/// preempted (their blocks given back, their tokens recomputed when they return, their output
/// unchanged). One background thread drives the model.
/// </summary>
public sealed class Scheduler : IDisposable
{
    private readonly ModelRunner _runner;
    private readonly AdapterManager? _adapters;
    private readonly SchedulerOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<Sequence> _incoming = new();
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];    // in admission order: the last is the first preempted
    private readonly KvCacheManager _kv;
    private readonly HashSet<int> _eos;
    private readonly AutoResetEvent _wake = new(false);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _queued;
    private long _steps, _generated, _prompted, _preemptions;
    private int _lastRows, _lastTokens;
    private SchedulerStats _stats;

    public Scheduler(ModelRunner runner, AdapterManager? adapters, SchedulerOptions options, ILogger? logger = null)
    {
        if (options.MaxNumSeqs < 1) throw new ArgumentOutOfRangeException(nameof(options), "--max-num-seqs must be at least 1.");
        if (options.MaxBatchTokens < options.MaxNumSeqs)
            throw new ArgumentOutOfRangeException(nameof(options), "--max-batch-tokens must be at least --max-num-seqs, so that every running sequence can decode in each step.");
        _runner = runner;
        _adapters = adapters;
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _kv = new KvCacheManager(runner.Pools, runner.Cache.Groups.Select(g => g.Window).ToArray(), runner.BlockSize, options.PrefixCaching, runner.Model.Config.KeyLengthThreshold);
        _eos = [.. options.EosTokenIds];
        _stats = Snapshot();
        if (_adapters is not null) _adapters.StateChanged += Wake;
        _thread = new Thread(Loop) { IsBackground = true, Name = "tunegw-scheduler" };
        _thread.Start();
    }

    public SchedulerOptions Options => _options;
    public int MaxLength => _runner.MaxLength;
    public SchedulerStats Stats => _stats;

    /// <summary>Raised after each step with the new statistics (on the scheduler thread; keep it cheap).</summary>
    public event Action<SchedulerStats>? StepCompleted;

    /// <summary>
    /// Queues a request. Throws <see cref="QueueFullException"/> when the queue is full,
    /// <see cref="RequestTooLongException"/> when it can never fit (the context length, or the
    /// whole KV cache), <see cref="UnknownAdapterException"/>
    /// for an adapter name nobody knows, and <see cref="ArgumentException"/> for invalid sampling.
    /// Cancelling <paramref name="cancellationToken"/> ends the request and frees its slot.
    /// </summary>
    public GenerationHandle Submit(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        request.Sampling.Validate();
        int promptLength = request.PromptIds.Count;
        if (promptLength == 0) throw new ArgumentException("The prompt must contain at least one token.", "prompt");
        if (promptLength + request.Sampling.MaxTokens > MaxLength)
        {
            throw new RequestTooLongException(
                $"This model's maximum context length is {MaxLength} tokens. However, you requested {promptLength + request.Sampling.MaxTokens} tokens " +
                $"({promptLength} in the prompt, {request.Sampling.MaxTokens} in the completion). Please reduce the prompt or max_tokens.");
        }
        if (!_kv.Fits(promptLength + request.Sampling.MaxTokens, _options.MaxBatchTokens, out int peak, out int capacity))
        {
            throw new RequestTooLongException(
                $"This request needs up to {peak} KV cache blocks of {_kv.BlockSize} tokens ({promptLength} prompt + {request.Sampling.MaxTokens} completion tokens), " +
                $"but the whole cache has {capacity}. Please reduce the prompt or max_tokens, or start the server with a larger --kv-cache-memory.");
        }

        AdapterLease? lease = null;
        if (request.Adapter is not null)
        {
            if (_adapters is null) throw new UnknownAdapterException(request.Adapter);
            lease = _adapters.Acquire(request.Adapter);
        }

        if (Interlocked.Increment(ref _queued) > _options.MaxQueue)
        {
            Interlocked.Decrement(ref _queued);
            lease?.Dispose();
            throw new QueueFullException(_options.MaxQueue);
        }

        var channel = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var sequence = new Sequence(request, channel.Writer, lease, Activity.Current?.Context ?? default);
        if (cancellationToken.CanBeCanceled)
        {
            sequence.CancellationRegistration = cancellationToken.Register(() =>
            {
                sequence.Cancelled = true;
                Wake();
            });
        }
        _incoming.Enqueue(sequence);
        Wake();
        return new GenerationHandle(request.RequestId, channel.Reader);
    }

    private void Wake() => _wake.Set();

    private void Loop()
    {
        while (!_stopping)
        {
            bool worked;
            try
            {
                worked = Step();
            }
            catch (Exception ex)
            {
                // A step that throws must not take the server down: fail what was running, go on.
                _logger.LogError(ex, "Scheduler step failed; ending {Count} running requests", _running.Count);
                foreach (var s in _running.ToArray()) Finish(s, FinishReason.Error, $"The engine failed while running this request: {ex.Message}");
                worked = true;
            }
            if (!worked) _wake.WaitOne(TimeSpan.FromMilliseconds(250));
        }
        foreach (var s in _running.Concat(_waiting).ToArray()) Finish(s, FinishReason.Abort, "The server is shutting down.");
        while (_incoming.TryDequeue(out var s)) Finish(s, FinishReason.Abort, "The server is shutting down.");
    }

    /// <summary>One scheduling step; false when there was nothing to do.</summary>
    private bool Step()
    {
        while (_incoming.TryDequeue(out var incoming)) _waiting.AddLast(incoming);
        DropCancelled();
        Admit();
        if (_running.Count == 0)
        {
            _stats = Snapshot();
            return false;
        }

        var (chunks, owners) = PlanChunks();
        if (chunks.Count == 0)
        {
            // Everything running waits for blocks held by the others: give the oldest room. (One
            // sequence alone always fits: Submit refused any whose peak exceeds the cache.)
            if (_running.Count > 1) Preempt(_running[^1]);
            else if (_running.Count == 1) Finish(_running[0], FinishReason.Error, "The KV cache cannot hold this request.");
            _stats = Snapshot();
            return true;
        }
        var versions = new List<AdapterVersion>();
        var adapterIndex = new int[chunks.Count];
        for (int i = 0; i < chunks.Count; i++)
        {
            var version = owners[i].Lease?.Version;
            adapterIndex[i] = -1;
            if (version is null) continue;
            int at = versions.IndexOf(version);
            if (at < 0) { at = versions.Count; versions.Add(version); }
            adapterIndex[i] = at;
        }
        var workingSet = versions.Count > 0 ? _adapters!.WorkingSet(versions) : null;
        for (int i = 0; i < chunks.Count; i++) chunks[i] = chunks[i] with { Adapter = adapterIndex[i] };

        var sampling = new List<RowSampling>();
        var sampled = new List<Sequence>();
        for (int i = 0; i < chunks.Count; i++)
        {
            if (!chunks[i].WantLogits) continue;
            sampling.Add(RowOf(owners[i]));
            sampled.Add(owners[i]);
        }

        bool scoring = chunks.Any(c => c.ScoreTargets.Length > 0);
        var scores = new List<PromptScores>();
        SampledToken[] tokens = sampling.Count > 0 || scoring
            ? _runner.Step(chunks, () => WithMasks(sampling, sampled), workingSet, scores)
            : RunWithoutSampling(chunks, workingSet);
        for (int i = 0, next = 0; i < chunks.Count && scoring; i++)
            if (chunks[i].ScoreTargets.Length > 0) owners[i].AddPromptScores(scores[next++]);

        _steps++;
        _lastRows = chunks.Count;
        _lastTokens = chunks.Sum(c => c.Tokens.Length);
        for (int i = 0; i < chunks.Count; i++)
        {
            var owner = owners[i];
            owner.Cached = chunks[i].Start + chunks[i].Tokens.Length;
            _kv.Commit(owner.Blocks!, owner.Tokens, chunks[i].Start, owner.Cached, chunks[i].SequenceLength ?? owner.Cached);
        }
        for (int i = 0; i < sampled.Count; i++) Accept(sampled[i], tokens[i]);
        _stats = Snapshot();
        StepCompleted?.Invoke(_stats);
        return true;
    }

    /// <summary>A sequence's sampling settings for this step; a sampled row takes the next draw of its own generator.</summary>
    private RowSampling RowOf(Sequence s)
    {
        var p = s.Request.Sampling;
        bool penalized = p.RepetitionPenalty != 1 || p.PresencePenalty != 0 || p.FrequencyPenalty != 0;
        return new RowSampling(p.Temperature, p.TopK, p.TopP, p.TopLogprobs, p.IsGreedy ? 0 : s.Random.NextDouble())
        {
            MinP = p.MinP,
            RepetitionPenalty = p.RepetitionPenalty,
            PresencePenalty = p.PresencePenalty,
            FrequencyPenalty = p.FrequencyPenalty,
            Tokens = penalized ? s.Tokens : null,
            PromptLength = s.PromptLength,
            LogitBias = p.LogitBias.Count > 0 ? p.LogitBias : null,
            Banned = s.Generated >= p.MinTokens ? null : p.IgnoreEos ? p.StopTokenIds : [.. _eos, .. p.StopTokenIds],
        };
    }

    /// <summary>
    /// Constrained rows' allowed tokens, computed on the thread pool since their last token was
    /// accepted (or since admission); called once the forward pass is done, so it rarely waits.
    /// </summary>
    private static List<RowSampling> WithMasks(List<RowSampling> sampling, List<Sequence> sampled)
    {
        for (int i = 0; i < sampled.Count; i++)
        {
            if (sampled[i].PendingMask is { } mask) sampling[i] = sampling[i] with { Allowed = mask.GetAwaiter().GetResult() };
        }
        return sampling;
    }

    private static void StartMask(Sequence s)
    {
        if (s.Request.Constraint is { } constraint) s.PendingMask = Task.Run(constraint.AllowedTokens);
    }

    private SampledToken[] RunWithoutSampling(List<SequenceChunk> chunks, LoraWorkingSet? set)
    {
        using var logits = _runner.Forward(chunks, set);
        return [];
    }

    private void DropCancelled()
    {
        for (var node = _waiting.First; node is not null;)
        {
            var next = node.Next;
            var s = node.Value;
            if (s.Cancelled || s.Lease?.Version.Aborted == true)
            {
                _waiting.Remove(node);
                Finish(s, s.Cancelled ? FinishReason.Abort : FinishReason.Error,
                    s.Cancelled ? "The request was cancelled." : $"Adapter '{s.Request.Adapter}' was unloaded.");
            }
            node = next;
        }
        foreach (var s in _running.ToArray())
        {
            if (s.Cancelled) Finish(s, FinishReason.Abort, "The request was cancelled.");
            else if (s.Lease?.Version.Aborted == true) Finish(s, FinishReason.Error, $"Adapter '{s.Request.Adapter}' was unloaded while this request ran.");
        }
    }

    /// <summary>
    /// Moves waiting requests into the running batch, first come first served among those whose
    /// adapter can run: each shares its cached prefix and takes blocks for its first chunk. The
    /// first that finds too few free blocks stops admission, so that a long prompt is not passed
    /// over forever by short ones.
    /// </summary>
    private void Admit()
    {
        var activeVersions = _running.Where(s => s.Lease is not null).Select(s => s.Lease!.Version).ToHashSet();
        for (var node = _waiting.First; node is not null && _running.Count < _options.MaxNumSeqs;)
        {
            var next = node.Next;
            var s = node.Value;
            var version = s.Lease?.Version;
            if (version is not null && !activeVersions.Contains(version))
            {
                if (activeVersions.Count >= _adapters!.MaxActiveAdapters) { node = next; continue; }
                var readiness = _adapters.Prepare(version, out string? error);
                if (readiness == AdapterReadiness.Failed)
                {
                    _waiting.Remove(node);
                    Finish(s, FinishReason.Error, error);
                    node = next;
                    continue;
                }
                if (readiness == AdapterReadiness.Loading) { node = next; continue; }
            }

            s.Blocks ??= _kv.Open(version is null ? KvScope.Base(_runner.Model.Directory) : new KvScope(_runner.Model.Directory, version.Name, version.Id));
            // Prompt log-probabilities need every prompt row computed, so such a prompt does not
            // reuse cached blocks (its own blocks are still cached for others).
            bool lookup = s.Generated > 0 || s.Request.Sampling.PromptLogprobs is null;
            // Blocks kept free for the running sequences' next decode steps; none are needed when nothing runs.
            int reserve = _running.Count == 0 ? 0 : Math.Max(1, _kv.Pools.Min(p => p.Capacity) / 100);
            long queried = _kv.QueriedTokens, hits = _kv.HitTokens;
            if (!_kv.TryStart(s.Blocks, s.Tokens, lookup, _options.MaxBatchTokens, reserve, out int cached)) break;
            EngineTelemetry.RecordPrefixLookup(s, _kv.QueriedTokens - queried, _kv.HitTokens - hits);
            s.Cached = cached;

            if (version is not null)
            {
                _adapters!.Activate(version);
                s.Activated = true;
                activeVersions.Add(version);
            }
            _waiting.Remove(node);
            Interlocked.Decrement(ref _queued);
            s.Running = true;
            if (s.Admitted == 0) s.Admitted = Stopwatch.GetTimestamp();
            _running.Add(s);
            if (s.PendingMask is null) StartMask(s);
            node = next;
        }
    }

    /// <summary>
    /// Decode rows for every sequence past its prompt, then prompt chunks within the token
    /// budget, each with the blocks it writes to taken first. A decode row that finds no free
    /// block preempts the newest running sequences (itself, if it is the newest); a prompt chunk
    /// shrinks to the blocks there are, or waits.
    /// </summary>
    private (List<SequenceChunk> Chunks, List<Sequence> Owners) PlanChunks()
    {
        var chunks = new List<SequenceChunk>();
        var owners = new List<Sequence>();
        int budget = _options.MaxBatchTokens;
        for (int i = 0; i < _running.Count; i++)
        {
            var s = _running[i];
            if (!s.IsDecoding) continue;
            bool held;
            while (!(held = _kv.TryHold(s.Blocks!, s.Cached + 1)))
            {
                var victim = _running[^1];
                Preempt(victim);
                if (victim == s) break;
            }
            if (!held) break;                                                        // s was the newest: nothing after it is left
            chunks.Add(new SequenceChunk(s.Blocks!.ToTables(), s.Cached, new[] { s.Tokens[^1] }));
            owners.Add(s);
            budget--;
        }
        foreach (var s in _running)
        {
            if (budget <= 0) break;
            if (s.IsDecoding) continue;
            int pending = s.Tokens.Count - s.Cached;
            int take = Math.Min(pending, budget);
            if (!_kv.TryHold(s.Blocks!, s.Cached + take))
            {
                take = Math.Min(take, _kv.HoldableTokens(s.Blocks!) - s.Cached);
                if (take <= 0 || !_kv.TryHold(s.Blocks!, s.Cached + take)) continue;
            }
            bool completes = take == pending;
            // Prompt scoring: each row against the prompt token after it (the last prompt row
            // predicts the first generated token). A preempted sequence that had started
            // generating recomputes its rows without scoring them again.
            int scored = s.Request.Sampling.PromptLogprobs is null || s.Generated > 0 ? 0 : Math.Min(take, s.PromptLength - s.Cached - 1);
            chunks.Add(new SequenceChunk(s.Blocks!.ToTables(), s.Cached, s.Tokens.GetRange(s.Cached, take).ToArray(), WantLogits: completes,
                ScoreTargets: scored > 0 ? s.Tokens.GetRange(s.Cached + 1, scored).ToArray() : default, ScoreTop: s.Request.Sampling.PromptLogprobs ?? 0,
                SequenceLength: s.Tokens.Count));
            owners.Add(s);
            budget -= take;
        }
        return (chunks, owners);
    }

    /// <summary>
    /// Takes a running sequence out to free its blocks: it goes back to the front of the queue
    /// with its tokens so far and, when admitted again, recomputes their keys and values
    /// (cheaply where its blocks are still cached) and goes on from the same sampler state.
    /// </summary>
    private void Preempt(Sequence s)
    {
        _kv.Free(s.Blocks!);
        s.Cached = 0;
        s.Running = false;
        _running.Remove(s);
        if (s.Activated)
        {
            _adapters!.Deactivate(s.Lease!.Version);
            s.Activated = false;
        }
        // Scores of a prompt not yet finished are recomputed with it.
        if (s.Generated == 0) s.ResetPromptScores();
        _waiting.AddFirst(s);
        Interlocked.Increment(ref _queued);
        _preemptions++;
        EngineTelemetry.RecordPreemption(s);
        _logger.LogDebug("Preempted request {RequestId} ({Tokens} tokens) for KV cache blocks", s.Request.RequestId, s.Tokens.Count);
    }

    private void Accept(Sequence s, SampledToken token)
    {
        s.Tokens.Add(token.TokenId);
        s.Generated++;
        _generated++;
        if (s.Generated == 1)
        {
            s.FirstToken = Stopwatch.GetTimestamp();
            _prompted += s.PromptLength;
            if (s.PromptScoring is { } scored)
                s.Output.TryWrite(new PromptScored(s.Tokens.GetRange(0, s.PromptLength), scored.Logprobs, scored.Top));
        }

        var sampling = s.Request.Sampling;
        bool eos = !sampling.IgnoreEos && _eos.Contains(token.TokenId);
        bool stopToken = sampling.StopTokenIds.Contains(token.TokenId);
        // A constrained row ends at a dead end with end-of-sequence although its output is incomplete: that is a cut, not a stop.
        bool cut = eos && s.Request.Constraint is { IsComplete: false };
        s.Request.Constraint?.Accept(token.TokenId);
        // A stop token's text is kept only when asked for; end-of-sequence is a special token without text.
        var text = s.Request.Text is { } stream && !eos && (!stopToken || sampling.IncludeStopStringInOutput) ? stream.Append(token.TokenId) : new TextStep("", false);
        s.Output.TryWrite(new TokenGenerated(token.TokenId, text.Text, token.Logprob, token.TopLogprobs));

        if (eos || stopToken) Finish(s, cut ? FinishReason.Length : FinishReason.Stop, null);
        else if (text.Stopped) Finish(s, FinishReason.Stop, null, text.StopString);
        else if (s.Generated >= sampling.MaxTokens) Finish(s, FinishReason.Length, null);
        else StartMask(s);
    }

    /// <summary>Ends a sequence wherever it is: emits the last event, frees its slot and adapter.</summary>
    private void Finish(Sequence s, FinishReason reason, string? error, string? stopString = null)
    {
        if (s.Done) return;
        s.Done = true;
        if (s.Running)
        {
            _running.Remove(s);
        }
        else
        {
            // Still waiting (or never dequeued, or preempted): it held a queue place.
            Interlocked.Decrement(ref _queued);
        }
        if (s.Blocks is not null) _kv.Free(s.Blocks);
        // Text held back (a possible stop-string prefix, an incomplete character) is released unless a stop string ended the sequence.
        string trailing = reason is FinishReason.Stop or FinishReason.Length && stopString is null && s.Request.Text is { } stream && s.Generated > 0
            ? stream.Finish()
            : "";

        long now = Stopwatch.GetTimestamp();
        var timings = s.Timings(now);
        s.Output.TryWrite(new GenerationFinished(reason, s.PromptLength, s.Generated, timings, trailing, stopString, error, s.Lease?.Version.Path));
        s.Output.TryComplete();
        s.CancellationRegistration.Dispose();
        if (s.Activated) _adapters!.Deactivate(s.Lease!.Version);
        s.Lease?.Dispose();
        EngineTelemetry.RecordFinished(s, reason, timings, now);
    }

    /// <summary>
    /// Cache use is reported for the attention group that is fullest (what admission waits on);
    /// block counts are summed over groups.
    /// </summary>
    private SchedulerStats Snapshot()
    {
        var fullest = _kv.Pools.MaxBy(p => (double)p.UsedCount / p.Capacity)!;
        return new(
            _running.Count, Volatile.Read(ref _queued), _options.MaxNumSeqs - _running.Count, _options.MaxNumSeqs,
            (long)fullest.UsedCount * _kv.BlockSize, (long)fullest.Capacity * _kv.BlockSize,
            _steps, _generated, _prompted, _lastRows, _lastTokens)
        {
            KvBlocks = _kv.Pools.Sum(p => p.Capacity),
            KvBlocksUsed = _kv.Pools.Sum(p => p.UsedCount),
            PrefixCachedBlocks = _kv.Pools.Sum(p => p.CachedCount),
            PrefixQueryTokens = _kv.QueriedTokens,
            PrefixHitTokens = _kv.HitTokens,
            Preemptions = _preemptions,
        };
    }

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        if (_adapters is not null) _adapters.StateChanged -= Wake;
        _wake.Set();
        _thread.Join();
        _wake.Dispose();
    }

    /// <summary>The scheduler's state for one request.</summary>
    internal sealed class Sequence
    {
        public Sequence(GenerationRequest request, ChannelWriter<GenerationEvent> output, AdapterLease? lease, ActivityContext parent)
        {
            Request = request;
            Output = output;
            Lease = lease;
            Parent = parent;
            Tokens = [.. request.PromptIds];
            PromptLength = Tokens.Count;
            Random = new Random(request.Sampling.Seed is long seed ? unchecked((int)(seed ^ (seed >> 32))) : System.Random.Shared.Next());
            if (request.Sampling.PromptLogprobs is not null) PromptScoring = ([null], [null]);
            Arrived = Stopwatch.GetTimestamp();
            ArrivedAt = DateTimeOffset.UtcNow;
        }

        public GenerationRequest Request { get; }
        public ChannelWriter<GenerationEvent> Output { get; }
        public AdapterLease? Lease { get; }
        public ActivityContext Parent { get; }
        public List<int> Tokens { get; }
        public int PromptLength { get; }
        public Random Random { get; }
        public long Arrived { get; }
        public DateTimeOffset ArrivedAt { get; }
        public long Admitted { get; set; }
        public long FirstToken { get; set; }
        /// <summary>In the running batch (false while queued, or after preemption).</summary>
        public bool Running { get; set; }
        /// <summary>Its KV cache blocks, from its first admission on.</summary>
        public SequenceBlocks? Blocks { get; set; }
        /// <summary>Tokens whose keys and values are in the cache.</summary>
        public int Cached { get; set; }
        /// <summary>Past its prompt with every token but the last sampled one cached: its next row is a decode row.</summary>
        public bool IsDecoding => Generated > 0 && Cached == Tokens.Count - 1;
        public int Generated { get; set; }
        public bool Activated { get; set; }
        /// <summary>A constrained row's allowed tokens for its next step, being computed.</summary>
        public Task<TokenMask>? PendingMask { get; set; }
        public bool Done { get; set; }
        public volatile bool Cancelled;
        public CancellationTokenRegistration CancellationRegistration { get; set; }
        /// <summary>The prompt's scores so far, when asked for (the first token has none).</summary>
        public (List<float?> Logprobs, List<IReadOnlyList<(int TokenId, float Logprob)>?> Top)? PromptScoring { get; }

        public void ResetPromptScores()
        {
            if (PromptScoring is not var (logprobs, top)) return;
            logprobs.RemoveRange(1, logprobs.Count - 1);
            top.RemoveRange(1, top.Count - 1);
        }

        public void AddPromptScores(PromptScores scores)
        {
            var (logprobs, top) = PromptScoring!.Value;
            logprobs.AddRange(scores.Logprobs.Select(l => (float?)l));
            top.AddRange(scores.Top);
        }

        public GenerationTimings Timings(long now)
        {
            double Seconds(long from, long to) => from == 0 || to == 0 ? 0 : Stopwatch.GetElapsedTime(from, to).TotalSeconds;
            double decode = Generated > 1 ? Seconds(FirstToken, now) / (Generated - 1) : 0;
            return new GenerationTimings(Seconds(Arrived, Admitted == 0 ? now : Admitted), Seconds(Arrived, FirstToken), Seconds(Arrived, now), decode);
        }
    }
}
