using TorchSharp;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// The new tokens of one sequence in one forward pass: <see cref="Tokens"/> go to positions
/// <see cref="Start"/>.. of cache slot <see cref="Slot"/>. A one-token chunk is a decode row.
/// <see cref="Adapter"/> indexes the step's LoRA working set (-1: the base model alone).
/// <see cref="ScoreTargets"/> (prompt log-probabilities): row j of the chunk is scored against
/// token ScoreTargets[j], the one that follows it in the prompt, with <see cref="ScoreTop"/>
/// alternatives; it covers the first rows only (a final chunk's last row predicts the first
/// generated token, which is sampled instead).
/// </summary>
public readonly record struct SequenceChunk(int Slot, int Start, ReadOnlyMemory<int> Tokens, bool WantLogits = true, int Adapter = -1,
    ReadOnlyMemory<int> ScoreTargets = default, int ScoreTop = 0);

/// <summary>A prefill chunk's place in the packed rows.</summary>
public sealed record PrefillChunk(int Offset, int Slot, int Start, int Length);

/// <summary>
/// Device tensors describing one forward pass over packed tokens: decode rows first (sorted by
/// slot, so contiguous slots become a view of the cache), then prefill chunks.
/// Build it inside a dispose scope; its tensors belong to that scope.
/// </summary>
public sealed class ForwardBatch
{
    private ForwardBatch() { }

    public required Tensor TokenIds { get; init; }
    public required Tensor Positions { get; init; }
    public required Tensor CacheSlots { get; init; }
    /// <summary>For each packed row, the length of its sequence once this pass is done (its chunk's end).</summary>
    public required Tensor SequenceLengths { get; init; }
    /// <summary>
    /// Packed rows whose logits are returned, chunk by chunk in input order: a chunk's scored rows
    /// (<see cref="SequenceChunk.ScoreTargets"/>), then its last row when it wants logits.
    /// </summary>
    public required Tensor LogitRows { get; init; }

    public int DecodeCount { get; init; }
    /// <summary>First slot when the decode rows' slots are consecutive; otherwise null and <see cref="DecodeSlots"/> is set.</summary>
    public int? DecodeSlotStart { get; init; }
    public Tensor? DecodeSlots { get; init; }
    public int DecodeKeyLength { get; init; }
    /// <summary>The position of each decode row (its key length is this + 1).</summary>
    public IReadOnlyList<int> DecodePositions { get; init; } = [];
    public IReadOnlyList<PrefillChunk> Prefills { get; init; } = [];

    /// <summary>For each packed row, the index of the input chunk it came from.</summary>
    public required int[] RowChunk { get; init; }

    public int TokenCount => RowChunk.Length;

    public static ForwardBatch Build(IReadOnlyList<SequenceChunk> chunks, int maxLength, Device device)
    {
        if (chunks.Count == 0) throw new ArgumentException("A forward pass needs at least one chunk.", nameof(chunks));
        var decode = new List<int>();
        var prefill = new List<int>();
        for (int i = 0; i < chunks.Count; i++)
        {
            var c = chunks[i];
            if (c.Tokens.Length == 0) throw new ArgumentException($"Chunk {i} has no tokens.", nameof(chunks));
            if (c.Start < 0 || c.Start + c.Tokens.Length > maxLength)
                throw new ArgumentException($"Chunk {i} covers positions {c.Start}..{c.Start + c.Tokens.Length - 1}, beyond the context length {maxLength}.", nameof(chunks));
            (c.Tokens.Length == 1 ? decode : prefill).Add(i);
        }
        decode.Sort((a, b) => chunks[a].Slot.CompareTo(chunks[b].Slot));

        int total = chunks.Sum(c => c.Tokens.Length);
        var ids = new long[total];
        var positions = new long[total];
        var slots = new long[total];
        var lengths = new long[total];
        var rowChunk = new int[total];
        var chunkOffset = new int[chunks.Count];
        int row = 0;
        foreach (int i in decode.Concat(prefill))
        {
            var c = chunks[i];
            chunkOffset[i] = row;
            var span = c.Tokens.Span;
            for (int t = 0; t < span.Length; t++, row++)
            {
                ids[row] = span[t];
                positions[row] = c.Start + t;
                slots[row] = c.Slot;
                lengths[row] = c.Start + c.Tokens.Length;
                rowChunk[row] = i;
            }
        }

        var logitRows = new List<long>();
        for (int i = 0; i < chunks.Count; i++)
        {
            var c = chunks[i];
            int scored = c.ScoreTargets.Length;
            if (scored > c.Tokens.Length - (c.WantLogits ? 1 : 0))
                throw new ArgumentException($"Chunk {i} scores {scored} rows of {c.Tokens.Length}{(c.WantLogits ? ", its last row being sampled" : "")}.", nameof(chunks));
            for (int j = 0; j < scored; j++) logitRows.Add(chunkOffset[i] + j);
            if (c.WantLogits) logitRows.Add(chunkOffset[i] + c.Tokens.Length - 1);
        }

        int decodeCount = decode.Count;
        int? slotStart = null;
        Tensor? decodeSlots = null;
        int keyLength = 0;
        if (decodeCount > 0)
        {
            bool consecutive = true;
            for (int j = 1; j < decodeCount; j++)
                consecutive &= chunks[decode[j]].Slot == chunks[decode[0]].Slot + j;
            if (consecutive) slotStart = chunks[decode[0]].Slot;
            else decodeSlots = torch.tensor(decode.Select(i => (long)chunks[i].Slot).ToArray(), device: device);

            keyLength = decode.Max(i => chunks[i].Start) + 1;
        }

        var prefills = prefill.Select(i => new PrefillChunk(chunkOffset[i], chunks[i].Slot, chunks[i].Start, chunks[i].Tokens.Length)).ToArray();

        return new ForwardBatch
        {
            TokenIds = torch.tensor(ids, device: device),
            Positions = torch.tensor(positions, device: device),
            CacheSlots = torch.tensor(slots, device: device),
            SequenceLengths = torch.tensor(lengths, device: device),
            LogitRows = torch.tensor(logitRows.ToArray(), device: device),
            DecodeCount = decodeCount,
            DecodeSlotStart = slotStart,
            DecodeSlots = decodeSlots,
            DecodeKeyLength = keyLength,
            DecodePositions = decode.Select(i => chunks[i].Start).ToArray(),
            Prefills = prefills,
            RowChunk = rowChunk,
        };
    }
}
