using System.Text.Json.Serialization;

namespace TuneGateway.Training;

/// <summary>Progress of a run, for the console bar and the controller's logs.</summary>
public sealed record TrainingProgress(int Epoch, int Epochs, int Step, int TotalSteps, double Loss, double LearningRate, double? ValidationLoss);

public sealed record StepRecord(
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("epoch")] int Epoch,
    [property: JsonPropertyName("loss")] double Loss,
    [property: JsonPropertyName("learning_rate")] double LearningRate,
    [property: JsonPropertyName("grad_norm")] double GradNorm);

public sealed record ValidationRecord(
    [property: JsonPropertyName("epoch")] int Epoch,
    [property: JsonPropertyName("loss")] double Loss);

/// <summary>
/// What a run did, written as <c>training_report.json</c> next to the adapter: the configuration,
/// the data's hash and sizes, the loss of every optimizer step, the validation curve, and where
/// it stopped and why.
/// </summary>
public sealed record TrainingReport
{
    [JsonPropertyName("base_model")] public required string BaseModel { get; init; }
    [JsonPropertyName("data_sha256")] public required string DataSha256 { get; init; }
    [JsonPropertyName("train_examples")] public required int TrainExamples { get; init; }
    [JsonPropertyName("validation_examples")] public required int ValidationExamples { get; init; }
    [JsonPropertyName("skipped_examples")] public required int SkippedExamples { get; init; }
    [JsonPropertyName("config")] public required LoraTrainingOptions Config { get; init; }
    [JsonPropertyName("device")] public required string Device { get; init; }
    [JsonPropertyName("trainable_parameters")] public required long TrainableParameters { get; init; }
    [JsonPropertyName("steps")] public required IReadOnlyList<StepRecord> Steps { get; init; }
    [JsonPropertyName("validation")] public required IReadOnlyList<ValidationRecord> Validation { get; init; }
    [JsonPropertyName("best_epoch")] public int BestEpoch { get; init; }
    [JsonPropertyName("best_validation_loss")] public double? BestValidationLoss { get; init; }
    [JsonPropertyName("epochs_run")] public int EpochsRun { get; init; }
    [JsonPropertyName("stopped")] public required string Stopped { get; init; }
    [JsonPropertyName("seconds")] public double Seconds { get; init; }
    [JsonPropertyName("resumed_from")] public string? ResumedFrom { get; init; }
}
