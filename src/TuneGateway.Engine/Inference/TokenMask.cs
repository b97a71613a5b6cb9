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

    /// <summary>Writes "not allowed" for each of the first <c>destination.Length</c> ids (the sampler's masked_fill input).</summary>
    public void WriteDisallowed(Span<bool> destination)
    {
        for (int id = 0; id < destination.Length; id++) destination[id] = !this[id];
    }

    public IEnumerable<int> Ids()
    {
        for (int id = 0; id < Size; id++) if (this[id]) yield return id;
    }
}
