namespace TuneGateway.Training;

/// <summary>The output directory of a training run already holds an adapter, and overwriting was not asked for.</summary>
public sealed class AdapterExistsException(string message) : IOException(message);

/// <summary>Checks on where a training run writes its adapter.</summary>
public static class TrainingOutput
{
    /// <summary>The files that make a directory an adapter (PEFT's layout, what <c>tunegw serve</c> loads).</summary>
    public static readonly IReadOnlyList<string> AdapterFiles = ["adapter_config.json", "adapter_model.safetensors"];

    /// <summary>
    /// Refuses, before anything is written, a directory that already holds an adapter (it may be one
    /// being served: a run writes its result over it) unless <paramref name="overwrite"/>, and a path
    /// that is a file.
    /// </summary>
    public static void EnsureWritable(string directory, bool overwrite)
    {
        string full = Path.GetFullPath(directory);
        if (File.Exists(full)) throw new AdapterExistsException($"--out '{full}' is a file, not a directory.");
        if (overwrite || !Directory.Exists(full)) return;
        var existing = AdapterFiles.Where(f => File.Exists(Path.Combine(full, f))).ToArray();
        if (existing.Length > 0)
            throw new AdapterExistsException($"--out '{full}' already holds an adapter ({string.Join(", ", existing)}); nothing was written. " +
                "Choose another directory, or pass --overwrite to replace it (never the directory of an adapter being served).");
    }
}
