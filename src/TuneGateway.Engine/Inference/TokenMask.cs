namespace TuneGateway.Engine.Inference;

/// <summary>
/// A set of token ids over a vocabulary, as bits: which tokens a constrained row may pick next.
/// Immutable once built (masks are cached and shared between requests).
/// </summary>
public sealed class TokenMask
{
    private readonly ulong[] _bits;

    public TokenMask(int size)
    {
        Size = size;
        _bits = new ulong[(size + 63) / 64];
    }

    public int Size { get; }

    public bool this[int id] => id >= 0 && id < Size && (_bits[id >> 6] & (1UL << (id & 63))) != 0;

    public int Count => _bits.Sum(System.Numerics.BitOperations.PopCount);

    internal void Set(int id) => _bits[id >> 6] |= 1UL << (id & 63);

    /// <summary>The bits as bytes (id i is bit i % 8 of byte i / 8); bytes past the mask are 0 (not allowed).</summary>
    public void CopyBytes(Span<byte> destination)
    {
        destination.Clear();
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(_bits.AsSpan());
        if (!BitConverter.IsLittleEndian)
        {
            for (int id = 0; id < Math.Min(Size, destination.Length * 8); id++) if (this[id]) destination[id >> 3] |= (byte)(1 << (id & 7));
            return;
        }
        bytes[..Math.Min(bytes.Length, destination.Length)].CopyTo(destination);
    }

    public IEnumerable<int> Ids()
    {
        for (int id = 0; id < Size; id++) if (this[id]) yield return id;
    }
}
