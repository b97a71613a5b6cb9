using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using TuneGateway.Engine.Lora;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Training;

/// <summary>
/// Fine-tunes LoRA factors on a frozen base model: AdamW, warm-up then cosine or linear decay,
/// gradient clipping and accumulation, loss on completion tokens only, validation loss each
/// epoch with early stopping, checkpoints a later run can resume from when asked for
/// (<see cref="LoraTrainingOptions.CheckpointEvery"/>), and the best epoch's adapter written in
/// PEFT's format with a training report.
/// </summary>
public static class LoraTrainer
{
    public static readonly JsonSerializerOptions ReportJson = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    private const long IgnoreIndex = -100;

    /// <summary>
    /// Trains on <paramref name="data"/>. Validation uses <paramref name="validationData"/> when
    /// given (a pipeline's own split), else a seeded split of <see cref="LoraTrainingOptions.ValidationSplit"/>.
    /// </summary>
    public static TrainingReport Train(CausalLanguageModel model, TrainingData data, LoraTrainingOptions options, string outputDirectory,
        IProgress<TrainingProgress>? progress = null, string? resumeFrom = null, string? baseModelId = null,
        TrainingData? validationData = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (options.Threads > 0) torch.set_num_threads(options.Threads);
        var clock = Stopwatch.StartNew();

        var (train, validation) = validationData is null
            ? Split(data.Examples, options)
            : (data.Examples.ToList(), validationData.Examples.ToList());
        int microBatches = (train.Count + options.BatchSize - 1) / options.BatchSize;
        int stepsPerEpoch = Math.Max(1, microBatches / options.GradientAccumulation);
        int totalSteps = options.MaxSteps > 0 ? Math.Min(options.MaxSteps, stepsPerEpoch * options.Epochs) : stepsPerEpoch * options.Epochs;
        int warmup = (int)Math.Ceiling(totalSteps * options.WarmupRatio);

        using var lora = new TrainableLora(model, options);
        var parameters = lora.Parameters.ToArray();
        var optimizer = torch.optim.AdamW(parameters, options.LearningRate, weight_decay: options.WeightDecay);

        var steps = new List<StepRecord>();
        var curve = new List<ValidationRecord>();
        int startEpoch = 1, step = 0, bestEpoch = 0, sinceBest = 0;
        double? best = null;
        if (resumeFrom is not null)
        {
            var state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(Path.Combine(resumeFrom, "trainer_state.json")))
                ?? throw new InvalidDataException($"'{resumeFrom}/trainer_state.json' is empty.");
            lora.Import(resumeFrom);
            optimizer.load_state_dict(Path.Combine(resumeFrom, "optimizer.bin"));
            (startEpoch, step, bestEpoch, sinceBest, best) = (state.Epoch + 1, state.Step, state.BestEpoch, state.SinceBest, state.BestValidationLoss);
            steps.AddRange(state.Steps);
            curve.AddRange(state.Validation);
        }
        // The best epoch's factors, kept in memory (an adapter is small) so that no checkpoint is needed to write the result.
        var bestWeights = resumeFrom is null ? null : ResumedBest(lora, resumeFrom);

        string checkpoints = Path.Combine(outputDirectory, "checkpoints");
        (string Directory, double? Loss)? kept = null;
        string stopped = "completed all epochs";
        int epoch = startEpoch - 1;
        for (epoch = startEpoch; epoch <= options.Epochs; epoch++)
        {
            torch.manual_seed(options.Seed + epoch);
            var order = Shuffle(train.Count, options.Seed + epoch);
            lora.Training = true;
            int micro = 0;
            double accumulated = 0;
            optimizer.zero_grad();
            for (int start = 0; start < order.Length; start += options.BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = order.Skip(start).Take(options.BatchSize).Select(i => train[i]).ToArray();
                using (var scope = torch.NewDisposeScope())
                {
                    var loss = Loss(model, lora, batch) / options.GradientAccumulation;
                    loss.backward();
                    accumulated += loss.item<float>();
                }
                micro++;
                bool last = start + options.BatchSize >= order.Length;
                if (micro % options.GradientAccumulation != 0 && !last) continue;

                step++;
                double lr = LearningRate(options, step, warmup, totalSteps);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                double norm = torch.nn.utils.clip_grad_norm_(parameters, options.MaxGradNorm);
                optimizer.step();
                optimizer.zero_grad();
                int inStep = micro % options.GradientAccumulation == 0 ? options.GradientAccumulation : micro % options.GradientAccumulation;
                double stepLoss = accumulated * options.GradientAccumulation / inStep;
                accumulated = 0;
                steps.Add(new StepRecord(step, epoch, stepLoss, lr, norm));
                progress?.Report(new TrainingProgress(epoch, options.Epochs, step, totalSteps, stepLoss, lr, curve.LastOrDefault()?.Loss));
                if (options.MaxSteps > 0 && step >= options.MaxSteps) break;
            }

            double? validationLoss = validation.Count > 0 ? Evaluate(model, lora, validation, options.BatchSize) : null;
            if (validationLoss is double v)
            {
                curve.Add(new ValidationRecord(epoch, v));
                progress?.Report(new TrainingProgress(epoch, options.Epochs, step, totalSteps, steps.LastOrDefault()?.Loss ?? double.NaN, 0, v));
            }
            bool improved = validationLoss is not double value || best is null || value < best;
            if (improved)
            {
                best = validationLoss ?? best;
                bestEpoch = epoch;
                sinceBest = 0;
                Dispose(bestWeights);
                bestWeights = Copy(lora.Export());
            }
            else
            {
                sinceBest++;
            }
            if (options.CheckpointEvery > 0 && epoch % options.CheckpointEvery == 0)
                kept = Checkpoint(checkpoints, epoch, validationLoss, kept, lora, optimizer, options, baseModelId ?? model.Directory,
                    new TrainerState(epoch, step, bestEpoch, sinceBest, best, steps, curve), bestEpoch == epoch ? null : bestWeights);

            if (options.MaxSteps > 0 && step >= options.MaxSteps) { stopped = $"reached --max-steps {options.MaxSteps}"; break; }
            if (options.Patience > 0 && sinceBest >= options.Patience) { stopped = $"early stop: no validation improvement for {sinceBest} epochs"; break; }
        }

        // The adapter of the best epoch (by validation loss; the last one without validation).
        bestWeights ??= Copy(lora.Export());
        try
        {
            PeftWriter.Write(outputDirectory, options.Rank, options.Alpha, lora.TargetNames, bestWeights, baseModelId ?? model.Directory, options.UseRsLora);
        }
        finally
        {
            Dispose(bestWeights);
        }

        var report = new TrainingReport
        {
            BaseModel = baseModelId ?? model.Directory,
            DataSha256 = data.Sha256,
            TrainExamples = train.Count,
            ValidationExamples = validation.Count,
            SkippedExamples = data.Skipped,
            Config = options,
            Device = model.Device.ToString(),
            TrainableParameters = lora.ParameterCount,
            Steps = steps,
            Validation = curve,
            BestEpoch = bestEpoch,
            BestValidationLoss = best,
            EpochsRun = Math.Min(epoch, options.Epochs),
            Stopped = stopped,
            Seconds = clock.Elapsed.TotalSeconds,
            ResumedFrom = resumeFrom,
        };
        SafeTensorsWriter.WriteTextAtomically(Path.Combine(outputDirectory, "training_report.json"), JsonSerializer.Serialize(report, ReportJson));
        return report;
    }

    /// <summary>Mean cross-entropy over completion tokens of a right-padded batch.</summary>
    internal static Tensor Loss(CausalLanguageModel model, IProjectionDelta lora, IReadOnlyList<TokenizedExample> batch)
    {
        int length = batch.Max(e => e.Ids.Length);
        var ids = new long[batch.Count * length];
        var labels = new long[batch.Count * length];
        Array.Fill(labels, IgnoreIndex);
        for (int b = 0; b < batch.Count; b++)
        {
            var e = batch[b];
            for (int t = 0; t < e.Ids.Length; t++)
            {
                ids[b * length + t] = e.Ids[t];
                if (t >= e.CompletionStart) labels[b * length + t] = e.Ids[t];
            }
        }
        var input = torch.tensor(ids, device: model.Device).view(batch.Count, length);
        var target = torch.tensor(labels, device: model.Device).view(batch.Count, length);
        var logits = model.ForwardSequences(input, lora);
        // Position t predicts token t+1.
        var predicted = logits.narrow(1, 0, length - 1).reshape(-1, logits.shape[2]);
        var expected = target.narrow(1, 1, length - 1).reshape(-1);
        return torch.nn.functional.cross_entropy(predicted, expected, ignore_index: IgnoreIndex);
    }

    private static double Evaluate(CausalLanguageModel model, TrainableLora lora, IReadOnlyList<TokenizedExample> examples, int batchSize)
    {
        lora.Training = false;
        using var noGrad = torch.no_grad();
        double total = 0;
        long tokens = 0;
        for (int start = 0; start < examples.Count; start += batchSize)
        {
            var batch = examples.Skip(start).Take(batchSize).ToArray();
            using var scope = torch.NewDisposeScope();
            long count = batch.Sum(e => (long)e.Ids.Length - Math.Max(1, e.CompletionStart));
            total += Loss(model, lora, batch).item<float>() * count;
            tokens += count;
        }
        lora.Training = true;
        return total / Math.Max(1, tokens);
    }

    internal static double LearningRate(LoraTrainingOptions options, int step, int warmup, int total)
    {
        if (warmup > 0 && step <= warmup) return options.LearningRate * step / warmup;
        double progress = total <= warmup ? 1 : Math.Clamp((double)(step - warmup) / (total - warmup), 0, 1);
        return options.Schedule switch
        {
            LearningRateSchedule.Cosine => options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * progress)),
            LearningRateSchedule.Linear => options.LearningRate * (1 - progress),
            _ => options.LearningRate,
        };
    }

    private static (List<TokenizedExample> Train, List<TokenizedExample> Validation) Split(IReadOnlyList<TokenizedExample> examples, LoraTrainingOptions options)
    {
        var order = Shuffle(examples.Count, options.Seed);
        int validation = options.ValidationSplit > 0 && examples.Count >= 2 ? Math.Max(1, (int)Math.Round(examples.Count * options.ValidationSplit)) : 0;
        var shuffled = order.Select(i => examples[i]).ToList();
        return (shuffled.Skip(validation).ToList(), shuffled.Take(validation).ToList());
    }

    private static int[] Shuffle(int count, long seed)
    {
        var order = Enumerable.Range(0, count).ToArray();
        new Random(unchecked((int)seed)).Shuffle(order);
        return order;
    }

    /// <summary>The checkpoint subdirectory with the best epoch's adapter, when that epoch is not the checkpoint's own.</summary>
    private const string BestSubdirectory = "best";

    /// <summary>
    /// Writes the checkpoint of <paramref name="epoch"/>; with <see cref="LoraTrainingOptions.KeepBestCheckpoint"/>
    /// only when it beats the checkpoint kept so far, which it then replaces. Returns the checkpoint kept.
    /// </summary>
    private static (string Directory, double? Loss)? Checkpoint(string checkpoints, int epoch, double? validationLoss, (string Directory, double? Loss)? kept,
        TrainableLora lora, TorchSharp.Modules.OptimizerHelper optimizer, LoraTrainingOptions options, string baseModel, TrainerState state,
        IReadOnlyList<PeftModuleWeights>? bestWeights)
    {
        // Without validation there is nothing to compare: the latest checkpoint is the best one.
        if (options.KeepBestCheckpoint && kept is { Loss: double keptLoss } && validationLoss is double loss && loss >= keptLoss) return kept;
        string directory = Path.Combine(checkpoints, $"epoch-{epoch}");
        SaveCheckpoint(directory, lora, optimizer, options, baseModel, state, bestWeights);
        if (options.KeepBestCheckpoint && kept is { } previous && previous.Directory != directory) Directory.Delete(previous.Directory, recursive: true);
        return (directory, validationLoss);
    }

    /// <summary>On resume: the best epoch's factors, from the checkpoint's best/ copy, else the checkpoint itself.</summary>
    private static IReadOnlyList<PeftModuleWeights> ResumedBest(TrainableLora lora, string resumeFrom)
    {
        string best = Path.Combine(resumeFrom, BestSubdirectory);
        if (!File.Exists(Path.Combine(best, "adapter_model.safetensors"))) return Copy(lora.Export());
        lora.Import(best);
        var weights = Copy(lora.Export());
        lora.Import(resumeFrom);
        return weights;
    }

    /// <summary>
    /// Copies of exported factors that later optimizer steps cannot change (on CPU, an export shares
    /// the parameters' storage); the exported handles are released.
    /// </summary>
    private static IReadOnlyList<PeftModuleWeights> Copy(IReadOnlyList<PeftModuleWeights> exported)
    {
        var copies = exported.Select(w => new PeftModuleWeights(w.ModulePath, w.A.clone(), w.B.clone())).ToArray();
        Dispose(exported);
        return copies;
    }

    private static void Dispose(IReadOnlyList<PeftModuleWeights>? weights)
    {
        foreach (var w in weights ?? []) { w.A.Dispose(); w.B.Dispose(); }
    }

    private static void SaveCheckpoint(string directory, TrainableLora lora, TorchSharp.Modules.OptimizerHelper optimizer, LoraTrainingOptions options, string baseModel,
        TrainerState state, IReadOnlyList<PeftModuleWeights>? bestWeights)
    {
        Directory.CreateDirectory(directory);
        var weights = lora.Export();
        try
        {
            PeftWriter.Write(directory, options.Rank, options.Alpha, lora.TargetNames, weights, baseModel, options.UseRsLora);
        }
        finally
        {
            Dispose(weights);
        }
        // A run resumed from here must still end on the best epoch's adapter, which may be an earlier one.
        string best = Path.Combine(directory, BestSubdirectory);
        if (bestWeights is not null) PeftWriter.Write(best, options.Rank, options.Alpha, lora.TargetNames, bestWeights, baseModel, options.UseRsLora);
        else if (Directory.Exists(best)) Directory.Delete(best, recursive: true);
        string optimizerPath = Path.Combine(directory, "optimizer.bin");
        optimizer.save_state_dict(optimizerPath + ".tmp");
        File.Move(optimizerPath + ".tmp", optimizerPath, overwrite: true);
        SafeTensorsWriter.WriteTextAtomically(Path.Combine(directory, "trainer_state.json"), JsonSerializer.Serialize(state, ReportJson));
    }

    /// <summary>Where a run stands after an epoch; enough to resume it.</summary>
    private sealed record TrainerState(int Epoch, int Step, int BestEpoch, int SinceBest, double? BestValidationLoss,
        IReadOnlyList<StepRecord> Steps, IReadOnlyList<ValidationRecord> Validation);
}
