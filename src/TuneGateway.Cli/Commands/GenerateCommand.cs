using System.CommandLine;
using TuneGateway.Engine.Chat;
using TuneGateway.Engine.Inference;
using TuneGateway.Engine.Serving;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw generate</c>: one completion, streamed to the console as it is generated.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var engine = new EngineOptionsBinder();
        var adapter = new Option<string?>("--adapter") { Description = "PEFT adapter directory to apply." };
        var prompt = new Option<string>("--prompt") { Description = "The prompt text.", Required = true };
        var chat = new Option<bool>("--chat") { Description = "Treat the prompt as a user message and apply the chat template." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "0 for greedy decoding.", DefaultValueFactory = _ => 0.0 };
        var topP = new Option<double>("--top-p") { DefaultValueFactory = _ => 1.0, Description = "Nucleus sampling mass." };
        var topK = new Option<int>("--top-k") { DefaultValueFactory = _ => 0, Description = "Sample among the K most likely tokens (0: all)." };
        var seed = new Option<long?>("--seed") { Description = "Seed: the same seed gives the same text." };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable)." };

        var command = new Command("generate", "Generate a completion for one prompt and print it as it streams.")
        {
            adapter, prompt, chat, maxTokens, temperature, topP, topK, seed, stop,
        };
        engine.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = engine.Bind(parse) with { MaxNumSeqs = 1, MaxBatchTokens = 2048 };
            string? adapterDir = parse.GetValue(adapter);
            if (adapterDir is not null) options = options with { Loras = new Dictionary<string, string>(options.Loras) { ["adapter"] = adapterDir } };
            using var service = await InferenceEngine.LoadAsync(options, null, cancellationToken);

            string text = parse.GetValue(prompt)!;
            var ids = parse.GetValue(chat)
                ? service.Encode(service.RenderChat([new ChatMessage("user", text)]), addSpecialTokens: false)
                : service.Encode(text);
            var sampling = new SamplingParams
            {
                MaxTokens = parse.GetValue(maxTokens),
                Temperature = parse.GetValue(temperature),
                TopP = parse.GetValue(topP),
                TopK = parse.GetValue(topK),
                Seed = parse.GetValue(seed),
                Stop = parse.GetValue(stop) ?? [],
            };
            var handle = service.Submit(ids, sampling, adapterDir is null ? service.ModelId : "adapter", cancellationToken);
            await foreach (var e in handle.Events.ReadAllAsync(cancellationToken))
            {
                switch (e)
                {
                    case TokenGenerated token:
                        Console.Out.Write(token.Text);
                        Console.Out.Flush();
                        break;
                    case GenerationFinished finished:
                        Console.Out.WriteLine(finished.TrailingText);
                        if (finished.Error is not null)
                        {
                            Console.Error.WriteLine($"error: {finished.Error}");
                            return 1;
                        }
                        Console.Error.WriteLine($"[{finished.CompletionTokens} tokens, finish_reason={finished.Reason.ToString().ToLowerInvariant()}, " +
                            $"{finished.Timings.TimeToFirstTokenSeconds * 1000:0} ms to first token, {finished.Timings.TotalSeconds:0.00} s]");
                        break;
                }
            }
            return 0;
        });
        return command;
    }
}
