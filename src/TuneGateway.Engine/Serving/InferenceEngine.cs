using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TuneGateway.Engine.Chat;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Inference.Paging;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Runtime;
using TuneGateway.Engine.Structured;
using TuneGateway.Engine.Tokenization;

namespace TuneGateway.Engine.Serving;

/// <summary>
/// One served base model with its tokenizer, chat template, adapters and scheduler: what a
/// worker process runs. Load it once; submit requests from any thread.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly CausalLanguageModel _model;
    private readonly ModelRunner _runner;
    private readonly ChatTemplate? _chatTemplate;
    private readonly string? _chatTemplateError;

    private InferenceEngine(EngineOptions options, CausalLanguageModel model, HfTokenizer tokenizer, ModelRunner runner,
        AdapterManager adapters, Scheduler scheduler, ChatTemplate? chatTemplate, string? chatTemplateError)
    {
        Options = options;
        _model = model;
        Tokenizer = tokenizer;
        _runner = runner;
        Adapters = adapters;
        Scheduler = scheduler;
        _chatTemplate = chatTemplate;
        _chatTemplateError = chatTemplateError;
        ModelId = options.ServedModelName ?? DefaultName(options.ModelDirectory);
        Structured = new StructuredOutputs(() => TokenVocabulary.FromTokenizer(tokenizer, model.Config.VocabSize, scheduler.Options.EosTokenIds), options.StructuredOutputs);
    }

    public EngineOptions Options { get; }
    public string ModelId { get; }
    public HfTokenizer Tokenizer { get; }
    public AdapterManager Adapters { get; }
    public Scheduler Scheduler { get; }
    /// <summary>Constrained decoding (JSON schemas, tool calls) over this model's vocabulary.</summary>
    public StructuredOutputs Structured { get; }
    public ModelConfig Config => _model.Config;
    public int MaxModelLength => _runner.MaxLength;
    public string DeviceDescription => $"{_model.Device} ({TorchRuntime.DtypeName(_model.Dtype)})";
    public DateTimeOffset StartedAt { get; } = DateTimeOffset.UtcNow;

    /// <summary>
    /// Loads the model, tokenizer and chat template, allocates the KV cache, loads the adapters
    /// given at start, and starts the scheduler. Errors name the file and field at fault.
    /// </summary>
    public static async Task<InferenceEngine> LoadAsync(EngineOptions options, ILoggerFactory? loggers = null, CancellationToken cancellationToken = default)
    {
        loggers ??= NullLoggerFactory.Instance;
        var logger = loggers.CreateLogger<InferenceEngine>();
        var device = TorchRuntime.ResolveDevice(options.Device);
        var dtype = TorchRuntime.ResolveDtype(options.Dtype, device);

        var config = ModelConfig.FromDirectory(options.ModelDirectory);
        int maxLength = options.MaxModelLen ?? Math.Min(config.MaxPositionEmbeddings, 4096);
        if (maxLength > config.MaxPositionEmbeddings)
            throw new ArgumentException($"--max-model-len {maxLength} exceeds the model's max_position_embeddings ({config.MaxPositionEmbeddings}).");
        int slots = options.MaxNumSeqs;
        if (options.BlockSize is < 1 or > 1024) throw new ArgumentException($"--block-size {options.BlockSize}: expected 1 to 1024 tokens.");
        if (options.KvCacheMemoryFraction is double f && f is not (> 0 and <= 1))
            throw new ArgumentException($"--kv-cache-memory {f}: a fraction of free memory must be above 0 and at most 1.");

        var tokenizer = HfTokenizer.FromDirectory(options.ModelDirectory);
        ChatTemplate? template = null;
        string? templateError = null;
        try
        {
            template = options.ChatTemplatePath is { } path ? ChatTemplate.FromFile(path) : ChatTemplate.FromModelDirectory(options.ModelDirectory);
        }
        catch (ChatTemplateException ex) when (options.ChatTemplatePath is null)
        {
            // The model's own template uses something unsupported: serve completions, refuse chat with the reason.
            templateError = ex.Message;
            logger.LogWarning("The model's chat template cannot be used: {Message}. /v1/chat/completions will answer 400; pass --chat-template FILE.", ex.Message);
        }

        var model = CausalLanguageModel.Load(options.ModelDirectory, device, dtype, maxLength);
        ModelRunner? runner = null;
        AdapterManager? adapters = null;
        try
        {
            var groups = KvGroup.Of(config);
            int[] blocks = KvCacheBlocks(options, config, groups, dtype, device, maxLength, logger);
            runner = ModelRunner.WithGroupBlocks(model, maxLength, blocks, options.BlockSize);
            adapters = new AdapterManager(model, options.Adapters, loggers.CreateLogger<AdapterManager>());
            var eos = config.EosTokenIds.Concat(tokenizer.EosTokenId is int e ? [e] : []).Distinct().ToArray();
            var scheduler = new Scheduler(runner, adapters, new SchedulerOptions
            {
                MaxNumSeqs = slots,
                MaxBatchTokens = Math.Max(options.MaxBatchTokens, slots),
                MaxQueue = options.MaxQueue,
                EosTokenIds = eos,
                PrefixCaching = options.PrefixCaching,
            }, loggers.CreateLogger<Scheduler>());
            var engine = new InferenceEngine(options, model, tokenizer, runner, adapters, scheduler, template, templateError);
            logger.LogInformation("Loaded {Model} ({Architecture}, {Layers} layers, {Bytes:N0} bytes of weights) on {Device}; up to {Slots} sequences of up to {Length} tokens; " +
                "KV cache in blocks of {BlockSize} tokens: {Blocks} ({Cache:N0} bytes), prefix caching {PrefixCaching}",
                engine.ModelId, config.Architecture, config.NumLayers, model.WeightBytes, engine.DeviceDescription, slots, maxLength, options.BlockSize,
                string.Join(" + ", groups.Select((g, i) => $"{blocks[i] - 1} for {g.Layers.Count} {(g.Window is int w ? $"layers of window {w}" : "full-attention layers")}")),
                runner.Cache.Bytes, options.PrefixCaching ? "on" : "off");
            // The vocabulary's bytes and prefix tree (seconds for 150k tokens) are built in the background, not on the first constrained request.
            _ = Task.Run(() => engine.Structured.Vocabulary, CancellationToken.None);
            foreach (var (name, directory) in options.Loras)
            {
                await adapters.LoadAsync(name, directory, cancellationToken).ConfigureAwait(false);
            }
            return engine;
        }
        catch
        {
            adapters?.Dispose();
            runner?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// KV cache blocks per attention group (the null block included): what <c>--kv-cache-memory</c>
    /// holds, in bytes or as a fraction of the device's free memory once the weights are loaded;
    /// by default what <c>--max-num-seqs</c> sequences of the full context take, the memory the
    /// contiguous cache of earlier versions held, which the pages now share among more, shorter
    /// sequences. Where sliding-window layers sit beside full-attention ones, the windowed groups
    /// get what --max-num-seqs sequences can hold at most within their window, and the
    /// full-attention group the rest of the memory.
    /// </summary>
    private static int[] KvCacheBlocks(EngineOptions options, ModelConfig config, IReadOnlyList<KvGroup> groups, TorchSharp.torch.ScalarType dtype,
        TorchSharp.torch.Device device, int maxLength, ILogger logger)
    {
        int bs = options.BlockSize;
        var groupBytes = groups.Select(g => PagedKvCache.BytesPerToken(config, dtype, g.Layers.Count) * bs).ToArray();   // one block of each group
        long allLayers = groupBytes.Sum();
        int perSequence = PagedKvCache.BlocksFor(maxLength, bs);
        long budget;
        string source;
        if (options.KvCacheMemory is long bytes)
        {
            budget = bytes;
            source = $"--kv-cache-memory {bytes:N0} bytes";
        }
        else if (options.KvCacheMemoryFraction is double fraction)
        {
            long free = DeviceMemory.Free(device);
            budget = (long)(free * fraction);
            source = $"--kv-cache-memory {fraction} of {free:N0} free bytes";
        }
        else
        {
            budget = (long)options.MaxNumSeqs * perSequence * allLayers;
            source = $"--max-num-seqs {options.MaxNumSeqs} x --max-model-len {maxLength}";
        }

        long equal = budget / allLayers;
        var usable = groups.Select(_ => equal).ToArray();
        var peaks = groups.Select(g => KvCacheManager.PeakBlocks(g.Window, bs, maxLength, options.MaxBatchTokens)).ToArray();
        int full = Array.FindIndex(groups.ToArray(), g => g.Window is null);
        if (full >= 0 && groups.Count > 1)
        {
            long windowedBytes = 0;
            for (int g = 0; g < groups.Count; g++)
            {
                if (g == full) continue;
                usable[g] = Math.Min(equal, (long)options.MaxNumSeqs * peaks[g]);
                windowedBytes += usable[g] * groupBytes[g];
            }
            usable[full] = (budget - windowedBytes) / groupBytes[full];
        }
        if (usable.Any(u => u < 1))
            throw new ArgumentException($"{source} holds no KV cache block of {bs} tokens ({allLayers:N0} bytes over all layers); raise --kv-cache-memory or lower --block-size.");
        if (usable.Where((u, g) => u < peaks[g]).Any())
            logger.LogWarning("{Source} cannot hold one sequence of --max-model-len {Length}; longer requests are refused", source, maxLength);
        return usable.Select(u => (int)Math.Min(u, int.MaxValue - 1) + 1).ToArray();
    }

    /// <summary>The model directory's name, or its parent's when the directory is a generic "base".</summary>
    private static string DefaultName(string directory)
    {
        var info = new DirectoryInfo(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)));
        return info.Name == "base" && info.Parent is not null ? info.Parent.Name : info.Name;
    }

    /// <summary>True for the base model's id or a loaded / loadable adapter name.</summary>
    public bool Serves(string model) => model == ModelId || Adapters.Exists(model);

    /// <summary>
    /// Submits a tokenized prompt. <paramref name="model"/> is the base model's id or an adapter
    /// name. Throws as <see cref="Scheduler.Submit"/> does.
    /// </summary>
    /// <param name="constraint">Restricts the tokens (constrained decoding); one per request.</param>
    /// <param name="skipSpecialTokens">Leave special tokens out of the text (tool-call formats that start with one keep them).</param>
    public GenerationHandle Submit(IReadOnlyList<int> promptIds, SamplingParams sampling, string model, CancellationToken cancellationToken = default, string? requestId = null,
        ITokenConstraint? constraint = null, bool skipSpecialTokens = true)
    {
        var decoder = Tokenizer.CreateIncrementalDecoder(skipSpecialTokens, promptIds: promptIds);
        var request = new GenerationRequest
        {
            PromptIds = promptIds,
            Sampling = sampling,
            Adapter = model == ModelId ? null : model,
            RequestId = requestId ?? Guid.NewGuid().ToString("N"),
            Text = new StopStringTextStream(decoder, sampling.Stop, sampling.MinTokens, sampling.IncludeStopStringInOutput),
            Constraint = constraint,
        };
        return Scheduler.Submit(request, cancellationToken);
    }

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true) => Tokenizer.Encode(text, addSpecialTokens);

    /// <summary>The text of one token as OpenAI's logprobs show it.</summary>
    public string TokenText(int tokenId) => Tokenizer.Decode([tokenId]);

    /// <summary>
    /// Renders a conversation with the chat template. Throws <see cref="ChatTemplateException"/>
    /// when the model has no usable template or the template rejects the conversation.
    /// </summary>
    public string RenderChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, IReadOnlyDictionary<string, object?>? extra = null)
    {
        if (_chatTemplate is null)
            throw new ChatTemplateException(_chatTemplateError is null
                ? $"The model '{ModelId}' has no chat template (no 'chat_template' in tokenizer_config.json and no chat_template.jinja); start the server with --chat-template FILE."
                : $"The model's chat template is not supported: {_chatTemplateError}. Start the server with --chat-template FILE.");
        string? bos = Tokenizer.BosTokenId is int b ? Tokenizer.IdToToken(b) : null;
        string? eos = Tokenizer.EosTokenId is int e ? Tokenizer.IdToToken(e) : null;
        return _chatTemplate.Render(messages, addGenerationPrompt, bos, eos, extra);
    }

    public bool HasChatTemplate => _chatTemplate is not null;

    public void Dispose()
    {
        Scheduler.Dispose();
        Adapters.Dispose();
        _runner.Dispose();
        _model.Dispose();
    }
}
