namespace TuneGateway.Training;

/// <summary>How the learning rate moves after warm-up.</summary>
public enum LearningRateSchedule
{
    Cosine,
    Linear,
    Constant,
}

/// <summary>Hyperparameters of a LoRA fine-tuning run (the <c>tunegw train</c> flags).</summary>
public sealed record LoraTrainingOptions
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public bool UseRsLora { get; init; }
    public IReadOnlyList<string> Targets { get; init; } = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    public double Dropout { get; init; }
    public double LearningRate { get; init; } = 2e-4;
    public double WeightDecay { get; init; }
    public int Epochs { get; init; } = 3;
    public int BatchSize { get; init; } = 8;
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>Stop after this many optimizer steps (0: no limit).</summary>
    public int MaxSteps { get; init; }
    /// <summary>Fraction of the examples held out for validation (0: none).</summary>
    public double ValidationSplit { get; init; } = 0.1;
    /// <summary>Fraction of optimizer steps spent warming the learning rate up.</summary>
    public double WarmupRatio { get; init; } = 0.05;
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Cosine;
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Epochs without a better validation loss before stopping (0: never stop early).</summary>
    public int Patience { get; init; } = 2;
    public int MaxLength { get; init; } = 512;
    public long Seed { get; init; } = 42;
    /// <summary>CPU threads for libtorch (0: its default). Keeps training from starving a server on the same machine.</summary>
    public int Threads { get; init; }
    /// <summary>
    /// Write a resumable checkpoint (<c>OUT/checkpoints/epoch-N</c>: adapter, optimizer state, trainer
    /// state) every this many epochs; 0: none. Off by default: a checkpoint carries the optimizer's
    /// moments, several times the adapter's size, and most runs are never resumed.
    /// </summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Of the checkpoints <see cref="CheckpointEvery"/> writes, keep only the one with the best validation loss (the latest without validation).</summary>
    public bool KeepBestCheckpoint { get; init; }

    public void Validate()
    {
        if (Rank < 1) throw new ArgumentException("--rank must be at least 1.");
        if (Alpha <= 0) throw new ArgumentException("--alpha must be positive.");
        if (LearningRate <= 0) throw new ArgumentException("--lr must be positive.");
        if (Epochs < 1) throw new ArgumentException("--epochs must be at least 1.");
        if (BatchSize < 1) throw new ArgumentException("--batch-size must be at least 1.");
        if (GradientAccumulation < 1) throw new ArgumentException("--grad-accum must be at least 1.");
        if (ValidationSplit is < 0 or >= 1) throw new ArgumentException("--val-split must be in [0, 1).");
        if (Dropout is < 0 or >= 1) throw new ArgumentException("--lora-dropout must be in [0, 1).");
        if (CheckpointEvery < 0) throw new ArgumentException("--checkpoint-every must not be negative (0: no checkpoints).");
        if (KeepBestCheckpoint && CheckpointEvery == 0) throw new ArgumentException("--keep-best keeps the best of the checkpoints written; it needs --checkpoint-every N.");
        if (Targets.Count == 0) throw new ArgumentException("--targets must name at least one projection.");
        string[] known = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj"];
        foreach (string t in Targets)
            if (!known.Contains(t)) throw new ArgumentException($"--targets: unknown projection '{t}' (expected {string.Join(", ", known)}).");
    }
}
