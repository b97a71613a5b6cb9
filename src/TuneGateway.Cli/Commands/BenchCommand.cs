using System.CommandLine;
using TuneGateway.Cli.Bench;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Runtime;
using static TorchSharp.torch;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw bench</c>: engine, LoRA, gateway, traffic-log and sampler benchmarks, printed as tables.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (default: the bundled tiny model)." };
        var device = CommonOptions.Device();
        var dtype = CommonOptions.Dtype();
        var shapes = new Option<string>("--shapes") { Description = "Comma-separated: bundled, qwen0.5b, qwen3-0.6b, moe-8x2.", DefaultValueFactory = _ => "bundled,qwen0.5b" };
        var shapeLayers = new Option<int?>("--shape-layers") { Description = "Decoder layers of the random shapes (default: the real model's), to fit a slow machine." };
        var batches = new Option<string>("--batches") { Description = "Comma-separated batch sizes.", DefaultValueFactory = _ => "1,8,32" };
        var promptTokens = new Option<int?>("--prompt-tokens") { Description = "Prompt length (default: 128 on GPU, 32 on CPU)." };
        var newTokens = new Option<int?>("--new-tokens") { Description = "Tokens to decode per sequence (default: 128 on GPU, 8 on CPU)." };
        var loraRank = new Option<int>("--lora-rank") { Description = "Rank of the random adapters.", DefaultValueFactory = _ => 16 };
        var suites = new Option<string>("--suites") { Description = "Comma-separated: engine, lora, kv, gateway, traffic, sampler, structured.", DefaultValueFactory = _ => "engine,lora" };
        var gatewayClients = new Option<string>("--gateway-clients") { Description = "Gateway suite: comma-separated numbers of concurrent clients.", DefaultValueFactory = _ => "1,64" };
        var trafficClients = new Option<string>("--traffic-clients") { Description = "Traffic suite: comma-separated numbers of concurrent clients.", DefaultValueFactory = _ => "1,16" };
        var trafficEntries = new Option<int>("--traffic-entries") { Description = "Traffic suite: entries the writer benchmark records per store.", DefaultValueFactory = _ => 20_000 };

        var command = new Command("bench", "Measure prefill/decode throughput and multi-LoRA serving; prints Markdown tables.")
        {
            model, device, dtype, shapes, shapeLayers, batches, promptTokens, newTokens, loraRank, suites, gatewayClients, trafficClients, trafficEntries,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var dev = TorchRuntime.ResolveDevice(parse.GetValue(device));
            var type = TorchRuntime.ResolveDtype(parse.GetValue(dtype), dev);
            bool gpu = dev.type == TorchSharp.DeviceType.CUDA;
            int prompt = parse.GetValue(promptTokens) ?? (gpu ? 128 : 32);
            int decode = parse.GetValue(newTokens) ?? (gpu ? 128 : 8);
            string modelDirectory = parse.GetValue(model) ?? BundledModel.Directory;
            var selectedSuites = parse.GetValue(suites)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            foreach (string suite in selectedSuites)
            {
                if (suite is not ("engine" or "lora" or "kv" or "gateway" or "traffic" or "sampler" or "structured"))
                    throw new ArgumentException($"--suites: unknown suite '{suite}' (expected engine, lora, kv, gateway, traffic, sampler or structured).");
            }
            if (selectedSuites.Contains("structured")) StructuredBench.Run(Console.Out);

            // The HTTP suites serve the model with room in the batch for every concurrent client.
            TuneGateway.Engine.Serving.EngineOptions ServingEngine(int[] clients) => new()
            {
                ModelDirectory = modelDirectory,
                Device = parse.GetValue(device)!,
                Dtype = parse.GetValue(dtype)!,
                MaxNumSeqs = Math.Max(32, clients.Max()),
            };

            if (selectedSuites.Contains("gateway"))
            {
                var clients = Counts(parse.GetValue(gatewayClients)!, "--gateway-clients");
                await GatewayBench.RunAsync(new GatewayBenchOptions
                {
                    Engine = ServingEngine(clients),
                    Concurrency = clients,
                }, Console.Out, cancellationToken);
            }
            if (selectedSuites.Contains("traffic"))
            {
                var clients = Counts(parse.GetValue(trafficClients)!, "--traffic-clients");
                int entries = parse.GetValue(trafficEntries) is > 0 and var n ? n : throw new ArgumentException("--traffic-entries must be positive.");
                await TrafficBench.RunAsync(new TrafficBenchOptions
                {
                    Engine = ServingEngine(clients),
                    Concurrency = clients,
                    WriterEntries = entries,
                }, Console.Out, cancellationToken);
            }
            if (selectedSuites.Contains("sampler"))
                SamplerBench.Run(new SamplerBenchOptions { Device = dev, Batches = parse.GetValue(batches)!.Split(',').Select(int.Parse).ToArray() }, Console.Out);
            int? layers = parse.GetValue(shapeLayers) is int l ? (l > 0 ? l : throw new ArgumentException("--shape-layers must be positive.")) : null;
            if (selectedSuites.Contains("kv"))
            {
                // The first --shapes entry, loaded at whatever context each part needs.
                string first = parse.GetValue(shapes)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)[0];
                ModelConfig? kvShape = first switch
                {
                    "bundled" => null,
                    "qwen0.5b" => EngineBench.Qwen05BShape(),
                    "qwen3-0.6b" => EngineBench.Qwen3Dense06BShape(),
                    "moe-8x2" => EngineBench.SmallMoeShape(),
                    _ => throw new ArgumentException($"--shapes: unknown shape '{first}' (expected bundled, qwen0.5b, qwen3-0.6b or moe-8x2)."),
                };
                if (kvShape is not null && layers is int kvLayers) kvShape = kvShape with { NumLayers = kvLayers };
                await KvBench.RunAsync(new KvBenchOptions
                {
                    ModelName = kvShape is null ? "the bundled model" : $"{first} shape ({kvShape.NumLayers} layers, random), {TorchRuntime.DtypeName(type)} on {dev}",
                    Load = positions => kvShape is null ? CausalLanguageModel.Load(modelDirectory, dev, type, positions) : CausalLanguageModel.CreateRandom(kvShape, dev, type, positions),
                    Batches = parse.GetValue(batches)!.Split(',').Select(int.Parse).ToArray(),
                    ContextTokens = prompt,
                    DecodeSteps = Math.Max(4, decode),
                }, Console.Out);
            }
            if (!selectedSuites.Contains("engine") && !selectedSuites.Contains("lora")) return 0;

            (string, Func<CausalLanguageModel>) Random(string name, ModelConfig shape)
            {
                if (layers is int n) shape = shape with { NumLayers = n };
                return ($"{name} shape ({shape.NumLayers} layers, random)", () => CausalLanguageModel.CreateRandom(shape, dev, type, prompt + decode + 8));
            }
            var models = new List<(string, Func<CausalLanguageModel>)>();
            foreach (string shape in parse.GetValue(shapes)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                models.Add(shape switch
                {
                    "bundled" => (parse.GetValue(model) is null ? "llama-tiny (bundled)" : Path.GetFileName(Path.TrimEndingDirectorySeparator(modelDirectory)), () => CausalLanguageModel.Load(modelDirectory, dev, type, prompt + decode + 8)),
                    "qwen0.5b" => Random("Qwen2.5-0.5B", EngineBench.Qwen05BShape()),
                    "qwen3-0.6b" => Random("Qwen3-0.6B", EngineBench.Qwen3Dense06BShape()),
                    "moe-8x2" => Random("Qwen3-MoE 8 experts top-2", EngineBench.SmallMoeShape()),
                    _ => throw new ArgumentException($"--shapes: unknown shape '{shape}' (expected bundled, qwen0.5b, qwen3-0.6b or moe-8x2)."),
                });
            }
            await EngineBench.RunAsync(new EngineBenchOptions
            {
                Device = dev,
                Dtype = type,
                Models = models,
                Batches = parse.GetValue(batches)!.Split(',').Select(int.Parse).ToArray(),
                PromptTokens = prompt,
                NewTokens = decode,
                LoraRank = parse.GetValue(loraRank),
                EngineTable = selectedSuites.Contains("engine"),
                Lora = selectedSuites.Contains("lora"),
            }, Console.Out);
            return 0;
        });
        return command;
    }

    /// <summary>Comma-separated positive numbers (of concurrent clients).</summary>
    private static int[] Counts(string text, string option) =>
        text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(c => int.TryParse(c, out int n) && n > 0 ? n : throw new ArgumentException($"{option}: '{c}' is not a positive number.")).ToArray();
}
