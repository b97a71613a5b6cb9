using System.Text;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Serving;
using TuneGateway.Engine.Structured;
using TuneGateway.Worker.Tools;
using TuneGateway.Gateway.Common;

namespace TuneGateway.Worker;

/// <summary>A request ready for the engine: tokenized prompts, sampling, and how to answer.</summary>
internal sealed record GenerationPlan
{
    public required string Model { get; init; }
    public required IReadOnlyList<IReadOnlyList<int>> Prompts { get; init; }
    public required SamplingParams Sampling { get; init; }
    /// <summary>Choices returned per prompt.</summary>
    public int N { get; init; } = 1;
    /// <summary>Candidates generated per prompt (<c>best_of</c>, at least <see cref="N"/>); the N most likely are returned.</summary>
    public int BestOf { get; init; } = 1;
    public int Candidates => Math.Max(N, BestOf);
    /// <summary><c>echo</c>: each prompt's text, put before its choices' text; null without echo.</summary>
    public IReadOnlyList<string>? EchoPrompts { get; init; }
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }
    /// <summary>Report log-probabilities (with <see cref="SamplingParams.TopLogprobs"/> alternatives).</summary>
    public bool Logprobs { get; init; }
    public bool ReturnTokenIds { get; init; }
    /// <summary>The grammar every choice's output is held to (response_format, forced tool calls); null for free text.</summary>
    public CompiledGrammar? Grammar { get; init; }
    /// <summary>The request's tools (chat), which decide how outputs are read.</summary>
    public ToolPlan? Tools { get; init; }
    /// <summary>Keep special tokens in the text (a tool-call format whose marker is one).</summary>
    public bool KeepSpecialTokens { get; init; }
}

/// <summary>One generated token with what the API reports about it.</summary>
internal readonly record struct TokenOut(int TokenId, string Text, float Logprob, IReadOnlyList<(int TokenId, float Logprob)>? Top);

/// <summary>The result of one choice, collected for a non-streaming answer.</summary>
internal sealed class ChoiceResult(int index, int promptIndex)
{
    /// <summary>The choice's index in the answer (renumbered when <c>best_of</c> drops candidates).</summary>
    public int Index { get; set; } = index;
    public int PromptIndex { get; } = promptIndex;
    public StringBuilder Text { get; } = new();
    public List<TokenOut> Tokens { get; } = [];
    public GenerationFinished? Finished { get; set; }
    /// <summary>The prompt's scores, when they were asked for (echo with logprobs).</summary>
    public PromptScored? Prompt { get; set; }
}

/// <summary>
/// Runs a <see cref="GenerationPlan"/>: one engine request per prompt and candidate (n or best_of
/// > 1 offsets the seed per candidate), all cancelled together when the client disconnects or one submission
/// fails, their events merged in arrival order.
/// </summary>
internal sealed class GenerationRun : IDisposable
{
    private readonly CancellationTokenSource _cancel;
    private readonly List<(int PromptIndex, GenerationHandle Handle)> _handles = [];

    private GenerationRun(CancellationToken requestAborted) => _cancel = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);

    public CancellationToken Token => _cancel.Token;
    public int Count => _handles.Count;
    public int PromptIndexOf(int choice) => _handles[choice].PromptIndex;

    /// <summary>Submits every choice; engine refusals become API errors and cancel what was submitted.</summary>
    public static GenerationRun Start(InferenceEngine engine, GenerationPlan plan, CancellationToken requestAborted)
    {
        var run = new GenerationRun(requestAborted);
        try
        {
            for (int p = 0; p < plan.Prompts.Count; p++)
            {
                var ids = plan.Prompts[p];
                foreach (int id in ids)
                {
                    if (id < 0 || id >= engine.Config.VocabSize)
                        throw ApiException.Invalid("prompt", $"Token id {id} is out of the vocabulary (0 to {engine.Config.VocabSize - 1}).");
                }
                for (int i = 0; i < plan.Candidates; i++)
                {
                    var sampling = plan.Sampling.Seed is long seed && i > 0 ? plan.Sampling with { Seed = seed + i } : plan.Sampling;
                    run._handles.Add((p, engine.Submit(ids, sampling, plan.Model, run._cancel.Token,
                        constraint: plan.Grammar?.Start(), skipSpecialTokens: !plan.KeepSpecialTokens)));
                }
            }
            return run;
        }
        catch (Exception ex)
        {
            run._cancel.Cancel();
            run.Dispose();
            throw Translate(ex);
        }
    }

    /// <summary>Engine exceptions as the API reports them.</summary>
    public static Exception Translate(Exception ex) => ex switch
    {
        ApiException => ex,
        QueueFullException full => new ApiException(StatusCodes.Status429TooManyRequests, full.Message, ApiErrorTypes.RateLimit, code: "queue_full", retryAfter: TimeSpan.FromSeconds(1)),
        RequestTooLongException tooLong => ApiException.Invalid("max_tokens", tooLong.Message, "context_length_exceeded"),
        UnknownAdapterException unknown => new ApiException(StatusCodes.Status404NotFound, unknown.Message, ApiErrorTypes.NotFound, "model", "model_not_found"),
        ObjectDisposedException => new ApiException(StatusCodes.Status503ServiceUnavailable, "The server is shutting down.", ApiErrorTypes.Unavailable),
        ArgumentException arg => ApiException.Invalid(arg.ParamName ?? "request", StripParamSuffix(arg)),
        _ => ex,
    };

    private static string StripParamSuffix(ArgumentException ex)
    {
        string message = ex.Message;
        string suffix = $" (Parameter '{ex.ParamName}')";
        return ex.ParamName is not null && message.EndsWith(suffix, StringComparison.Ordinal) ? message[..^suffix.Length] : message;
    }

    /// <summary>Every choice's events, in the order they happen, tagged with the choice index.</summary>
    public async IAsyncEnumerable<(int Choice, GenerationEvent Event)> EventsAsync()
    {
        if (_handles.Count == 1)
        {
            await foreach (var e in _handles[0].Handle.Events.ReadAllAsync(CancellationToken.None).ConfigureAwait(false)) yield return (0, e);
            yield break;
        }
        var merged = Channel.CreateUnbounded<(int, GenerationEvent)>(new UnboundedChannelOptions { SingleReader = true });
        var pumps = _handles.Select((h, i) => Task.Run(async () =>
        {
            await foreach (var e in h.Handle.Events.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
                merged.Writer.TryWrite((i, e));
        })).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(t => merged.Writer.TryComplete(t.Exception), TaskScheduler.Default);
        await foreach (var item in merged.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false)) yield return item;
    }

    /// <summary>Reads every choice to its end (for non-streaming answers).</summary>
    public async Task<IReadOnlyList<ChoiceResult>> CollectAsync(InferenceEngine engine)
    {
        var results = Enumerable.Range(0, _handles.Count).Select(i => new ChoiceResult(i, _handles[i].PromptIndex)).ToArray();
        await foreach (var (choice, e) in EventsAsync().ConfigureAwait(false))
        {
            var result = results[choice];
            switch (e)
            {
                case TokenGenerated token:
                    result.Text.Append(token.Text);
                    result.Tokens.Add(new TokenOut(token.TokenId, engine.TokenText(token.TokenId), token.Logprob, token.TopLogprobs));
                    break;
                case PromptScored prompt:
                    result.Prompt = prompt;
                    break;
                case GenerationFinished finished:
                    result.Text.Append(finished.TrailingText);
                    result.Finished = finished;
                    break;
            }
        }
        return results;
    }

    /// <summary>Cancels every choice still running (their batch slots are freed at the next step).</summary>
    public void Cancel() => _cancel.Cancel();

    public void Dispose() => _cancel.Dispose();

    public static string? FinishReasonText(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => null,
    };

    /// <summary>-inf as vLLM reports it (JSON has no infinity).</summary>
    public static float Finite(float logprob) => float.IsFinite(logprob) ? logprob : -9999f;
}
