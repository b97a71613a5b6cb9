using System.Text.Json;
using System.Text.Json.Serialization;

namespace TuneGateway.Training;

/// <summary>
/// One training run, complete: what <c>tunegw train --request FILE</c> reads and the controller
/// writes. It is the contract between the two processes, so that a new hyperparameter is one
/// property here rather than a flag the controller must remember to pass; the file stays next to
/// the run's output as the record of how the adapter was trained.
/// </summary>
/// <param name="BaseModelDirectory">The frozen base model (Hugging Face layout).</param>
/// <param name="TrainData">JSON Lines of {"prompt","completion"} or {"messages"}.</param>
/// <param name="ValidationData">Validation JSON Lines; null: a seeded split of <see cref="LoraTrainingOptions.ValidationSplit"/>.</param>
/// <param name="OutputDirectory">Where the PEFT adapter and training_report.json go; must not hold an adapter already.</param>
/// <param name="Device">auto, cpu, cuda or cuda:N.</param>
public sealed record TrainingRequest(string BaseModelDirectory, string TrainData, string? ValidationData, string OutputDirectory, LoraTrainingOptions Options,
    string Device = "auto")
{
    /// <summary>Bumped when a change would make an older reader misread a request; a reader refuses other versions.</summary>
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;

    /// <summary>Weights' dtype (auto, float32, bfloat16, float16); null: the device's default.</summary>
    public string? Dtype { get; init; }

    /// <summary>Chat template file for {"messages"} data; null: the base model's.</summary>
    public string? ChatTemplate { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        // A misspelt key must not silently train with a default instead.
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
    };

    /// <summary>Where the controller keeps the request of a run that trains into <paramref name="outputDirectory"/>: beside it.</summary>
    public static string PathFor(string outputDirectory) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory)) + ".request.json";

    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, JsonSerializer.Serialize(this, Json));
    }

    /// <summary>Reads and validates a request; <see cref="InvalidDataException"/> names what is wrong.</summary>
    public static TrainingRequest Load(string path)
    {
        TrainingRequest? request;
        try
        {
            request = JsonSerializer.Deserialize<TrainingRequest>(File.ReadAllText(path), Json);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"Training request '{path}' is not valid: {ex.Message}", ex);
        }
        if (request is null) throw new InvalidDataException($"Training request '{path}' is empty.");
        if (request.Format != CurrentFormat)
            throw new InvalidDataException($"Training request '{path}' has format {request.Format}; this tunegw reads format {CurrentFormat}.");
        try
        {
            request.Options.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new InvalidDataException($"Training request '{path}': {ex.Message}", ex);
        }
        return request;
    }
}
