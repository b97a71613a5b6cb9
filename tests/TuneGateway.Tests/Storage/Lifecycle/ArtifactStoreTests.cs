using TuneGateway.Storage.Lifecycle;
using TuneGateway.Tests.Engine;

namespace TuneGateway.Tests.Storage.Lifecycle;

public class ArtifactStoreTests
{
    [Fact]
    public async Task PublishingIsAtomicChecksummedAndImmutable()
    {
        using var root = new TempDirectory();
        var store = new ArtifactStore(root.Path);
        string source = Path.Combine(Fixtures.LlamaTinyAdapters, "shout");

        // A reader polling the target never sees a partial directory.
        string target = store.PathOf("bot", "v1");
        using var stop = new CancellationTokenSource();
        var partial = 0;
        var reader = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (Directory.Exists(target) && !ArtifactStore.AdapterFiles.All(f => File.Exists(Path.Combine(target, f)) && new FileInfo(Path.Combine(target, f)).Length > 0))
                    Interlocked.Increment(ref partial);
                await Task.Yield();
            }
        });
        var published = await store.PublishAsync(source, "bot", "v1");
        await stop.CancelAsync();
        await reader;
        Assert.Equal(0, partial);
        Assert.Equal(target, published.Path);
        Assert.Equal(await ArtifactStore.ChecksumAsync(source), published.Sha256);
        await ArtifactStore.VerifyAsync(published.Path, published.Sha256);
        Assert.Empty(Directory.GetDirectories(Path.Combine(root.Path, "bot"), ".*"));

        await Assert.ThrowsAsync<IOException>(() => store.PublishAsync(source, "bot", "v1"));
        await Assert.ThrowsAsync<FileNotFoundException>(() => store.PublishAsync(root.Path, "bot", "v2"));

        // A flipped byte is caught.
        string weights = Path.Combine(published.Path, "adapter_model.safetensors");
        var bytes = await File.ReadAllBytesAsync(weights);
        bytes[^1] ^= 0x01;
        await File.WriteAllBytesAsync(weights, bytes);
        var error = await Assert.ThrowsAsync<ArtifactChecksumException>(() => ArtifactStore.VerifyAsync(published.Path, published.Sha256));
        Assert.Contains("corrupted", error.Message);
    }
}
