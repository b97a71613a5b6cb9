using System.IO.MemoryMappedFiles;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Models;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorEntry(string Name, string Dtype, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A memory-mapped <c>.safetensors</c> file: an 8-byte little-endian header length, a JSON header
/// mapping names to dtype, shape and byte range, then the raw data. Tensors are copied from the
/// mapping straight into native (libtorch) memory one at a time, so loading never holds a
/// managed copy of the weights.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long dataStart,
        Dictionary<string, SafeTensorEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _dataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
    }

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new ModelLoadException($"'{path}' is missing.");
        long length = new FileInfo(path).Length;
        if (length < 8) throw new ModelLoadException($"'{path}' is not a safetensors file: {length} bytes, shorter than the 8-byte header length.");

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        try
        {
            long headerLength = view.ReadInt64(0);
            if (headerLength <= 0 || headerLength > length - 8 || headerLength > 100_000_000)
                throw new ModelLoadException($"'{path}' is not a safetensors file: header length {headerLength} does not fit the file ({length} bytes).");

            var headerBytes = new byte[headerLength];
            view.ReadArray(8, headerBytes, 0, headerBytes.Length);
            long dataStart = 8 + headerLength;
            long dataLength = length - dataStart;

            var entries = new Dictionary<string, SafeTensorEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(headerBytes);
            }
            catch (JsonException ex)
            {
                throw new ModelLoadException($"'{path}' has a corrupt safetensors header: {ex.Message}", ex);
            }
            using (doc)
            {
                foreach (var property in doc.RootElement.EnumerateObject())
                {
                    if (property.Name == "__metadata__")
                    {
                        foreach (var m in property.Value.EnumerateObject()) metadata[m.Name] = m.Value.ToString();
                        continue;
                    }
                    entries[property.Name] = ParseEntry(path, property, dataLength);
                }
            }
            return new SafeTensorsFile(path, map, view, dataStart, entries, metadata);
        }
        catch
        {
            view.Dispose();
            map.Dispose();
            throw;
        }
    }

    private static SafeTensorEntry ParseEntry(string path, JsonProperty property, long dataLength)
    {
        try
        {
            var value = property.Value;
            string dtype = value.GetProperty("dtype").GetString() ?? "";
            long[] shape = value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            var offsets = value.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
                throw new ModelLoadException($"'{path}': tensor '{property.Name}' has data_offsets [{string.Join(", ", offsets)}] outside the file's {dataLength} data bytes (truncated file?).");
            var entry = new SafeTensorEntry(property.Name, dtype, shape, offsets[0], offsets[1]);
            if (ElementSize(dtype) is int size && entry.ElementCount * size != entry.End - entry.Begin)
                throw new ModelLoadException($"'{path}': tensor '{property.Name}' of dtype {dtype} and shape [{string.Join(", ", shape)}] should take {entry.ElementCount * size} bytes, not {entry.End - entry.Begin}.");
            return entry;
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new ModelLoadException($"'{path}': malformed header entry for tensor '{property.Name}': {ex.Message}", ex);
        }
    }

    /// <summary>Bytes per element of a safetensors dtype, or null for a dtype the engine does not read.</summary>
    public static int? ElementSize(string dtype) => dtype switch
    {
        "F32" or "I32" => 4,
        "F16" or "BF16" or "I16" => 2,
        "F64" or "I64" => 8,
        "U8" or "I8" or "BOOL" => 1,
        _ => null,
    };

    private static ScalarType ToScalarType(string path, SafeTensorEntry entry) => entry.Dtype switch
    {
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        _ => throw new ModelLoadException(
            $"'{path}': tensor '{entry.Name}' has dtype {entry.Dtype}; only F32, F16 and BF16 weights are supported (quantized checkpoints are not)."),
    };

    /// <summary>
    /// Reads one tensor into native memory and converts it to <paramref name="dtype"/> on
    /// <paramref name="device"/>. The temporary host copy is released before returning.
    /// </summary>
    public Tensor Load(string name, ScalarType dtype, Device device)
    {
        if (!Entries.TryGetValue(name, out var entry))
            throw new ModelLoadException($"'{Path}': tensor '{name}' is missing.");
        var fileType = ToScalarType(Path, entry);

        var host = torch.empty(entry.Shape, fileType, CPU);
        try
        {
            CopyInto(entry, host);
            if (fileType == dtype && device.type == DeviceType.CPU) return host;
            var result = host.to(dtype, device);
            host.Dispose();
            return result;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    private unsafe void CopyInto(SafeTensorEntry entry, Tensor host)
    {
        long total = entry.End - entry.Begin;
        if (total == 0) return;
        byte* basePointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
        try
        {
            byte* source = basePointer + _view.PointerOffset + _dataStart + entry.Begin;
            // Tensor.bytes spans at most int.MaxValue bytes: copy through 1-D chunks.
            using var flat = host.view(-1);
            long elementSize = total / Math.Max(1, entry.ElementCount);
            long chunkElements = (1L << 30) / elementSize;
            for (long start = 0; start < entry.ElementCount; start += chunkElements)
            {
                long count = Math.Min(chunkElements, entry.ElementCount - start);
                using var chunk = flat.narrow(0, start, count);
                var target = chunk.bytes;
                new ReadOnlySpan<byte>(source + start * elementSize, checked((int)(count * elementSize))).CopyTo(target);
            }
        }
        finally
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    public void Dispose()
    {
        _view.Dispose();
        _map.Dispose();
    }
}

/// <summary>
/// The weights of a model directory: <c>model.safetensors</c>, or the shards listed in
/// <c>model.safetensors.index.json</c>.
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    private readonly Dictionary<string, SafeTensorsFile> _byTensor = new(StringComparer.Ordinal);
    private readonly List<SafeTensorsFile> _files = [];

    public string Directory { get; }
    public IEnumerable<string> TensorNames => _byTensor.Keys;

    private SafeTensorsCheckpoint(string directory) => Directory = directory;

    public static SafeTensorsCheckpoint Open(string directory)
    {
        var checkpoint = new SafeTensorsCheckpoint(directory);
        try
        {
            string single = System.IO.Path.Combine(directory, "model.safetensors");
            string index = System.IO.Path.Combine(directory, "model.safetensors.index.json");
            if (File.Exists(single))
            {
                checkpoint.Add(SafeTensorsFile.Open(single));
            }
            else if (File.Exists(index))
            {
                checkpoint.AddShards(index);
            }
            else
            {
                string hint = File.Exists(System.IO.Path.Combine(directory, "pytorch_model.bin")) || File.Exists(System.IO.Path.Combine(directory, "pytorch_model.bin.index.json"))
                    ? " Pickled pytorch_model.bin checkpoints are not loaded (they can run code); convert them to safetensors."
                    : "";
                throw new ModelLoadException($"'{directory}' has neither model.safetensors nor model.safetensors.index.json.{hint}");
            }
            return checkpoint;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    private void AddShards(string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"'{indexPath}': field 'weight_map' is missing.");
            weightMap = map.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
        }
        catch (JsonException ex)
        {
            throw new ModelLoadException($"'{indexPath}' is not valid JSON: {ex.Message}", ex);
        }

        foreach (string shard in weightMap.Values.Distinct().Order(StringComparer.Ordinal))
        {
            if (shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                throw new ModelLoadException($"'{indexPath}': shard name '{shard}' must be a file name in the model directory.");
            Add(SafeTensorsFile.Open(System.IO.Path.Combine(Directory, shard)));
        }
        foreach (var (tensor, shard) in weightMap)
        {
            if (!_byTensor.TryGetValue(tensor, out var file) || System.IO.Path.GetFileName(file.Path) != shard)
                throw new ModelLoadException($"'{indexPath}' maps tensor '{tensor}' to '{shard}', but that shard does not contain it.");
        }
    }

    private void Add(SafeTensorsFile file)
    {
        _files.Add(file);
        foreach (string name in file.Entries.Keys)
        {
            if (!_byTensor.TryAdd(name, file))
                throw new ModelLoadException($"Tensor '{name}' appears in both '{_byTensor[name].Path}' and '{file.Path}'.");
        }
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public SafeTensorEntry Entry(string name) =>
        _byTensor.TryGetValue(name, out var file) ? file.Entries[name]
            : throw new ModelLoadException($"'{Directory}': tensor '{name}' is missing from the checkpoint.");

    /// <summary>Loads a tensor after checking its shape.</summary>
    public Tensor Load(string name, long[] expectedShape, ScalarType dtype, Device device)
    {
        var entry = Entry(name);
        if (!entry.Shape.SequenceEqual(expectedShape))
            throw new ModelLoadException(
                $"'{_byTensor[name].Path}': tensor '{name}' has shape [{string.Join(", ", entry.Shape)}]; config.json implies [{string.Join(", ", expectedShape)}].");
        return _byTensor[name].Load(name, dtype, device);
    }

    public void Dispose()
    {
        foreach (var file in _files) file.Dispose();
        _files.Clear();
        _byTensor.Clear();
    }
}
