using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace TuneGateway.Engine.Inference.Paging;

/// <summary>
/// The identity of a full block's keys and values: a hash chained over everything they depend on.
/// A chain starts at <see cref="Root"/> of the scope (base model, adapter name and loaded
/// version), and each block's hash covers its parent's hash, its own token ids and a variant
/// (what else its keys were computed under: longrope's short or long factors), so equal hashes
/// mean the same tokens at the same positions after the same prefix under the same weights. SHA-256 (truncated to 128 bits) rather than a fast non-cryptographic hash: a
/// collision would silently serve another prompt's keys, and hashing is once per 16 tokens.
/// </summary>
public readonly record struct BlockHash(UInt128 Value)
{
    /// <summary>The start of every chain computed under <paramref name="scope"/>.</summary>
    public static BlockHash Root(KvScope scope) => Of(Encoding.UTF8.GetBytes(scope.Key));

    /// <summary>The hash of a block holding <paramref name="tokens"/> after <paramref name="parent"/>.</summary>
    public static BlockHash Next(BlockHash parent, ReadOnlySpan<int> tokens, byte variant = 1)
    {
        int length = 17 + 4 * tokens.Length;
        byte[]? rented = length > 512 ? ArrayPool<byte>.Shared.Rent(length) : null;
        Span<byte> buffer = rented is null ? stackalloc byte[length] : rented.AsSpan(0, length);
        try
        {
            BinaryPrimitives.WriteUInt128LittleEndian(buffer, parent.Value);
            buffer[16] = variant;
            for (int i = 0; i < tokens.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(buffer[(17 + 4 * i)..], tokens[i]);
            return Of(buffer);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static BlockHash Of(ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(data, digest);
        return new BlockHash(BinaryPrimitives.ReadUInt128LittleEndian(digest));
    }
}

/// <summary>
/// What, besides the tokens, decides a sequence's keys and values: the base model and the adapter
/// version it runs under. Adapter versions are told apart by their load id, so a version reloaded
/// from the same directory (whose files may have changed) never shares blocks with its
/// predecessor.
/// </summary>
public sealed record KvScope(string Model, string? Adapter, long AdapterVersion)
{
    public static KvScope Base(string model) => new(model, null, 0);

    internal string Key => $"{Model}\n{Adapter}\n{AdapterVersion}";
}
