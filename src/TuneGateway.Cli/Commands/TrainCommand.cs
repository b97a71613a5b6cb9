using System.CommandLine;
using System.Diagnostics;
using TuneGateway.Engine.Chat;
using TuneGateway.Engine.Models;
using TuneGateway.Engine.Runtime;
using TuneGateway.Engine.Tokenization;
using TuneGateway.Training;

namespace TuneGateway.Cli.Commands;

/// <summary><c>tunegw train</c>: LoRA fine-tuning from JSON Lines into a PEFT adapter directory.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Base model directory (default: the bundled tiny model)." };
        var data = new Option<string?>("--data") { Description = "JSON Lines: {\"prompt\", \"completion\"} or {\"messages\": [...]} (required without --request)." };
        var validationData = new Option<string?>("--val-data") { Description = "Validation JSON Lines (instead of --val-split)." };
        var output = new Option<string?>("--out") { Description = "Output directory for the PEFT adapter and training_report.json (required without --request)." };
        var rank = new Option<int>("--rank") { DefaultValueFactory = _ => 8, Description = "LoRA rank." };
        var alpha = new Option<double>("--alpha") { DefaultValueFactory = _ => 16, Description = "LoRA alpha (scale alpha/rank)." };
        var rslora = new Option<bool>("--rslora") { Description = "Scale by alpha/sqrt(rank)." };
        var targets = new Option<string>("--targets") { DefaultValueFactory = _ => "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", Description = "Comma-separated projections." };
        var dropout = new Option<double>("--lora-dropout") { DefaultValueFactory = _ => 0.05, Description = "Dropout on the LoRA input during training." };
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 2e-4, Description = "Peak learning rate." };
        var weightDecay = new Option<double>("--weight-decay") { DefaultValueFactory = _ => 0.0, Description = "AdamW weight decay." };
        var schedule = new Option<LearningRateSchedule>("--schedule") { DefaultValueFactory = _ => LearningRateSchedule.Cosine, Description = "cosine, linear or constant after warm-up." };
        var warmup = new Option<double>("--warmup-ratio") { DefaultValueFactory = _ => 0.05, Description = "Fraction of steps warming up." };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 3 };
        var batchSize = new Option<int>("--batch-size") { DefaultValueFactory = _ => 8 };
        var gradAccum = new Option<int>("--grad-accum") { DefaultValueFactory = _ => 1, Description = "Micro-batches per optimizer step." };
        var maxSteps = new Option<int>("--max-steps") { DefaultValueFactory = _ => 0, Description = "Stop after N optimizer steps (0: no limit)." };
        var valSplit = new Option<double>("--val-split") { DefaultValueFactory = _ => 0.1, Description = "Fraction held out for validation." };
        var patience = new Option<int>("--patience") { DefaultValueFactory = _ => 2, Description = "Epochs without validation improvement before stopping (0: never)." };
        var maxGradNorm = new Option<double>("--max-grad-norm") { DefaultValueFactory = _ => 1.0 };
        var maxLength = new Option<int>("--max-length") { DefaultValueFactory = _ => 512, Description = "Longer examples are skipped." };
        var seed = new Option<long>("--seed") { DefaultValueFactory = _ => 42 };
        var threads = new Option<int>("--threads") { DefaultValueFactory = _ => 0, Description = "CPU threads for libtorch (0: default); leave cores to a server on the same machine." };
        var resume = new Option<string?>("--resume") { Description = "Checkpoint directory (OUT/checkpoints/epoch-N) to resume from." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an adapter already in --out (refused otherwise; nothing is written)." };
        var checkpointEvery = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => 0, Description = "Write a resumable checkpoint (OUT/checkpoints/epoch-N) every N epochs (0: none)." };
        var keepBest = new Option<bool>("--keep-best") { Description = "Keep only the checkpoint with the best validation loss (with --checkpoint-every)." };
        var device = CommonOptions.Device();
        var dtype = CommonOptions.Dtype();
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Chat template file for {\"messages\"} data (default: the model's)." };
        var request = new Option<string?>("--request")
        {
            Description = "A training request file (JSON, as the controller writes it) holding every setting; no other training flag goes with it.",
        };

        var command = new Command("train", "Fine-tune a LoRA adapter in TorchSharp; writes PEFT files HF PEFT loads as is.")
        {
            model, data, validationData, output, rank, alpha, rslora, targets, dropout, lr, weightDecay, schedule, warmup, epochs, batchSize, gradAccum,
            maxSteps, valSplit, patience, maxGradNorm, maxLength, seed, threads, resume, overwrite, checkpointEvery, keepBest, device, dtype, chatTemplate, request,
        };
        // What a request file already says; --resume and --overwrite are about this invocation, not the run's settings.
        Option[] settings = [.. command.Options.Except([resume, overwrite, request])];
        command.SetAction((parse, cancellationToken) =>
        {
            TrainingRequest run;
            if (parse.GetValue(request) is { } file)
            {
                if (settings.FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) is { } extra)
                    throw new ArgumentException($"--request holds every training setting; drop {extra.Name} (or drop --request).");
                run = TrainingRequest.Load(file);
            }
            else
            {
                if (parse.GetValue(data) is null || parse.GetValue(output) is null) throw new ArgumentException("--data and --out are required (or give --request FILE).");
                var options = new LoraTrainingOptions
                {
                    Rank = parse.GetValue(rank),
                    Alpha = parse.GetValue(alpha),
                    UseRsLora = parse.GetValue(rslora),
                    Targets = parse.GetValue(targets)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
                    Dropout = parse.GetValue(dropout),
                    LearningRate = parse.GetValue(lr),
                    WeightDecay = parse.GetValue(weightDecay),
                    Schedule = parse.GetValue(schedule),
                    WarmupRatio = parse.GetValue(warmup),
                    Epochs = parse.GetValue(epochs),
                    BatchSize = parse.GetValue(batchSize),
                    GradientAccumulation = parse.GetValue(gradAccum),
                    MaxSteps = parse.GetValue(maxSteps),
                    ValidationSplit = parse.GetValue(validationData) is null ? parse.GetValue(valSplit) : 0,
                    Patience = parse.GetValue(patience),
                    MaxGradNorm = parse.GetValue(maxGradNorm),
                    MaxLength = parse.GetValue(maxLength),
                    Seed = parse.GetValue(seed),
                    Threads = parse.GetValue(threads),
                    CheckpointEvery = parse.GetValue(checkpointEvery),
                    KeepBestCheckpoint = parse.GetValue(keepBest),
                };
                options.Validate();
                run = new TrainingRequest(parse.GetValue(model) ?? BundledModel.Directory, parse.GetValue(data)!, parse.GetValue(validationData), parse.GetValue(output)!,
                    options, parse.GetValue(device)!) { Dtype = parse.GetValue(dtype), ChatTemplate = parse.GetValue(chatTemplate) };
            }
            Train(run, parse.GetValue(resume), parse.GetValue(overwrite), cancellationToken);
            return Task.FromResult(0);
        });
        return command;
    }

    private static void Train(TrainingRequest run, string? resume, bool overwrite, CancellationToken cancellationToken)
    {
        // First, before any file is read or written: a run must not replace an adapter (perhaps one being served) by accident.
        TrainingOutput.EnsureWritable(run.OutputDirectory, overwrite);
        var options = run.Options;
        string modelDirectory = run.BaseModelDirectory;
        var dev = TorchRuntime.ResolveDevice(run.Device);
        var type = TorchRuntime.ResolveDtype(run.Dtype, dev);
        var tokenizer = HfTokenizer.FromDirectory(modelDirectory);
        var template = run.ChatTemplate is { } file ? ChatTemplate.FromFile(file) : ChatTemplate.FromModelDirectory(modelDirectory);
        var trainData = TrainingData.Load(run.TrainData, tokenizer, template, options.MaxLength);
        var validation = run.ValidationData is { } v ? TrainingData.Load(v, tokenizer, template, options.MaxLength) : null;

        using var baseModel = CausalLanguageModel.Load(modelDirectory, dev, type, options.MaxLength);
        Console.Error.WriteLine($"Training rank-{options.Rank} LoRA on {modelDirectory} ({dev}, {TorchRuntime.DtypeName(type)}): " +
            $"{trainData.Examples.Count} examples ({trainData.Skipped} skipped as too long)");
        var bar = new ProgressBar(Console.Error);
        var report = LoraTrainer.Train(baseModel, trainData, options, run.OutputDirectory, bar, resume,
            baseModelId: Path.GetFullPath(modelDirectory), validationData: validation, cancellationToken: cancellationToken);
        bar.Done();
        Console.Error.WriteLine($"{report.Stopped}; best epoch {report.BestEpoch}" +
            (report.BestValidationLoss is double best ? $" (validation loss {best:F4})" : "") +
            $"; {report.Steps.Count} steps in {report.Seconds:F1} s. Adapter: {Path.GetFullPath(run.OutputDirectory)}");
    }

    /// <summary>A one-line progress bar redrawn in place (plain lines when output is redirected).</summary>
    private sealed class ProgressBar(TextWriter output) : IProgress<TrainingProgress>
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastDraw;

        public void Report(TrainingProgress p)
        {
            bool redirected = Console.IsErrorRedirected;
            if (redirected && p.ValidationLoss is null && p.Step % 10 != 0 && p.Step != p.TotalSteps) return;
            long now = _clock.ElapsedMilliseconds;
            if (!redirected && now - _lastDraw < 100 && p.Step != p.TotalSteps) return;
            _lastDraw = now;
            const int width = 30;
            int filled = p.TotalSteps == 0 ? width : Math.Min(width, p.Step * width / p.TotalSteps);
            string line = $"[{new string('#', filled)}{new string('.', width - filled)}] step {p.Step}/{p.TotalSteps} epoch {p.Epoch}/{p.Epochs} " +
                $"loss {p.Loss:F4}" + (p.ValidationLoss is double v ? $" val {v:F4}" : "") + (p.LearningRate > 0 ? $" lr {p.LearningRate:E2}" : "") +
                $" {_clock.Elapsed:mm\\:ss}";
            if (redirected) output.WriteLine(line);
            else output.Write("\r" + line.PadRight(Console.WindowWidth > 0 ? Math.Min(Console.WindowWidth - 1, 120) : 100));
        }

        public void Done()
        {
            if (!Console.IsErrorRedirected) output.WriteLine();
        }
    }
}
