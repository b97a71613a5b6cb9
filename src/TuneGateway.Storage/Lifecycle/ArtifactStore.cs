using System.Security.Cryptography;

namespace TuneGateway.Storage.Lifecycle;

/// <summary>A version's files once published: where they are and the weights' SHA-256.</summary>
public sealed record PublishedArtifact(string Path, string Sha256);

/// <summary>The weights on disk do not match the checksum the registry recorded.</summary>
public sealed class ArtifactChecksumException(string message) : Exception(message);

/// <summary>
/// The adapter artifact directory (a shared volume in a cluster): version <c>v</c> of adapter
/// <c>a</c> lives in <c>{root}/{a}/{v}/</c>, which is where workers look for <c>a@v</c> under
/// <c>--lora-dir</c>. Publishing copies the files into a temporary directory on the same volume,
/// flushes them, and renames the directory into place, so a reader sees a version whole or not at all.
/// </summary>
public sealed class ArtifactStore(string root)
{
    public static readonly string[] AdapterFiles = ["adapter_config.json", "adapter_model.safetensors"];
    /// <summary>Written next to the weights; the engine checks it when it loads the version.</summary>
    public const string ChecksumFileName = "adapter_model.safetensors.sha256";
    private static readonly string[] OptionalFiles = ["training_report.json", "drift_profile.json"];

    public string Root { get; } = System.IO.Path.GetFullPath(root);

    public string PathOf(string adapter, string version) => System.IO.Path.Combine(Root, adapter, version);

    public async Task<PublishedArtifact> PublishAsync(string sourceDirectory, string adapter, string version, CancellationToken cancellationToken = default)
    {
        LifecycleRules.ValidateName(adapter, "adapter");
        LifecycleRules.ValidateName(version, "version");
        foreach (string file in AdapterFiles)
        {
            if (!File.Exists(System.IO.Path.Combine(sourceDirectory, file)))
                throw new FileNotFoundException($"'{sourceDirectory}' has no {file}; it is not a PEFT adapter directory.", System.IO.Path.Combine(sourceDirectory, file));
        }
        string target = PathOf(adapter, version);
        if (Directory.Exists(target)) throw new IOException($"'{target}' already exists: versions are immutable.");
        string parent = System.IO.Path.Combine(Root, adapter);
        Directory.CreateDirectory(parent);
        string staging = System.IO.Path.Combine(parent, $".{version}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(staging);
        try
        {
            foreach (string file in AdapterFiles.Concat(OptionalFiles))
            {
                string source = System.IO.Path.Combine(sourceDirectory, file);
                if (!File.Exists(source)) continue;
                string destination = System.IO.Path.Combine(staging, file);
                await using (var input = File.OpenRead(source))
                await using (var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write))
                {
                    await input.CopyToAsync(output, cancellationToken).ConfigureAwait(false);
                    output.Flush(flushToDisk: true);
                }
            }
            string sha256 = await ChecksumAsync(staging, cancellationToken).ConfigureAwait(false);
            // Workers verify the weights against this file before loading them (sha256sum format).
            string checksumFile = System.IO.Path.Combine(staging, ChecksumFileName);
            await File.WriteAllTextAsync(checksumFile, $"{sha256}  adapter_model.safetensors\n", cancellationToken).ConfigureAwait(false);
            Directory.Move(staging, target);
            return new PublishedArtifact(target, sha256);
        }
        catch
        {
            try { Directory.Delete(staging, recursive: true); }
            catch (IOException) { }
            throw;
        }
    }

    /// <summary>SHA-256 (hex) of a version directory's adapter_model.safetensors.</summary>
    public static async Task<string> ChecksumAsync(string directory, CancellationToken cancellationToken = default)
    {
        await using var stream = File.OpenRead(System.IO.Path.Combine(directory, "adapter_model.safetensors"));
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>Throws <see cref="ArtifactChecksumException"/> when the weights differ from what was registered.</summary>
    public static async Task VerifyAsync(string directory, string expectedSha256, CancellationToken cancellationToken = default)
    {
        string actual = await ChecksumAsync(directory, cancellationToken).ConfigureAwait(false);
        if (!string.Equals(actual, expectedSha256, StringComparison.OrdinalIgnoreCase))
            throw new ArtifactChecksumException($"'{directory}/adapter_model.safetensors' has SHA-256 {actual}, but the registry recorded {expectedSha256}: the artifact was changed or corrupted.");
    }
}
