using TorchSharp;
using TuneGateway.Engine.Inference.Paging;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// The new tokens of one sequence in one forward pass: <see cref="Tokens"/> go to positions
/// <see cref="Start"/>.. of the sequence whose KV cache blocks <see cref="Blocks"/> lists, per
/// attention group (they must cover every position up to the chunk's end). A one-token chunk is a decode row.
/// <see cref="Adapter"/> indexes the step's LoRA working set (-1: the base model alone).
/// <see cref="ScoreTargets"/> (prompt log-probabilities): row j of the chunk is scored against
/// token ScoreTargets[j], the one that follows it in the prompt, with <see cref="ScoreTop"/>
/// alternatives; it covers the first rows only (a final chunk's last row predicts the first
/// generated token, which is sampled instead).
/// <see cref="SequenceLength"/> is the sequence length transformers would see in this pass (the
/// whole prompt, for a chunk of one prefilled in pieces); by default the chunk's end. Only
/// longrope reads it.
/// </summary>
public readonly record struct SequenceChunk(BlockTables Blocks, int Start, ReadOnlyMemory<int> Tokens, bool WantLogits = true, int Adapter = -1,
    ReadOnlyMemory<int> ScoreTargets = default, int ScoreTop = 0, int? SequenceLength = null);

/// <summary>
/// A prefill chunk's place in the packed rows. <see cref="Blocks"/> holds, per attention group,
/// its block table [1, blocks] when earlier positions are cached (Start &gt; 0); a chunk from
/// position 0 attends to its own keys and needs no gather.
/// </summary>
public sealed record PrefillChunk(int Offset, int Start, int Length, Tensor[]? Blocks);

/// <summary>
/// Device tensors describing one forward pass over packed tokens: decode rows first, then
/// prefill chunks, with the token slot each row's key and value go to and the block tables
/// attention reads them back through. Build it inside a dispose scope; its tensors belong to
/// that scope.
/// </summary>
public sealed class ForwardBatch
{
    private ForwardBatch() { }

    public required Tensor TokenIds { get; init; }
    public required Tensor Positions { get; init; }
    /// <summary>Per attention group, each packed row's token slot in the cache: block · block size + offset.</summary>
    public required Tensor[] CacheSlots { get; init; }
    /// <summary>For each packed row, the length of its sequence once this pass is done (its chunk's end).</summary>
    public required Tensor SequenceLengths { get; init; }
    /// <summary>
    /// Packed rows whose logits are returned, chunk by chunk in input order: a chunk's scored rows
    /// (<see cref="SequenceChunk.ScoreTargets"/>), then its last row when it wants logits.
    /// </summary>
    public required Tensor LogitRows { get; init; }

    public int DecodeCount { get; init; }
    /// <summary>Per attention group, the decode rows' block tables [rows, blocks], padded with the null block.</summary>
    public Tensor[]? DecodeBlocks { get; init; }
    public int DecodeKeyLength { get; init; }
    /// <summary>The position of each decode row (its key length is this + 1).</summary>
    public IReadOnlyList<int> DecodePositions { get; init; } = [];
    public IReadOnlyList<PrefillChunk> Prefills { get; init; } = [];

    /// <summary>For each packed row, the index of the input chunk it came from.</summary>
    public required int[] RowChunk { get; init; }

    public int TokenCount => RowChunk.Length;

    public static ForwardBatch Build(IReadOnlyList<SequenceChunk> chunks, int maxLength, int blockSize, Device device)
    {
        if (chunks.Count == 0) throw new ArgumentException("A forward pass needs at least one chunk.", nameof(chunks));
        var decode = new List<int>();
        var prefill = new List<int>();
        for (int i = 0; i < chunks.Count; i++)
        {
            var c = chunks[i];
            int end = c.Start + c.Tokens.Length;
            if (c.Tokens.Length == 0) throw new ArgumentException($"Chunk {i} has no tokens.", nameof(chunks));
            if (c.Start < 0 || end > maxLength)
                throw new ArgumentException($"Chunk {i} covers positions {c.Start}..{end - 1}, beyond the context length {maxLength}.", nameof(chunks));
            if (c.Blocks.Length * blockSize < end)
                throw new ArgumentException($"Chunk {i} covers positions up to {end - 1} but its {c.Blocks.Length} blocks hold {c.Blocks.Length * blockSize} tokens.", nameof(chunks));
            (c.Tokens.Length == 1 ? decode : prefill).Add(i);
        }

        int total = chunks.Sum(c => c.Tokens.Length);
        var ids = new long[total];
        var positions = new long[total];
        int groups = chunks[0].Blocks.Groups.Length;
        var slots = Enumerable.Range(0, groups).Select(_ => new long[total]).ToArray();
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
                int position = c.Start + t;
                ids[row] = span[t];
                positions[row] = position;
                for (int g = 0; g < groups; g++)
                    slots[g][row] = (long)c.Blocks.Groups[g][position / blockSize] * blockSize + position % blockSize;
                lengths[row] = c.SequenceLength ?? c.Start + c.Tokens.Length;
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

        Tensor[]? decodeBlocks = null;
        int keyLength = 0;
        if (decode.Count > 0)
        {
            keyLength = decode.Max(i => chunks[i].Start) + 1;
            int perRow = (keyLength + blockSize - 1) / blockSize;
            decodeBlocks = new Tensor[groups];
            for (int g = 0; g < groups; g++)
            {
                var tables = new long[decode.Count * perRow];                        // null-block padded
                for (int j = 0; j < decode.Count; j++)
                {
                    var blocks = chunks[decode[j]].Blocks.Groups[g];
                    for (int b = 0; b < Math.Min(perRow, blocks.Length); b++) tables[j * perRow + b] = blocks[b];
                }
                decodeBlocks[g] = torch.tensor(tables, device: device).view(decode.Count, perRow);  // [rows, blocks]
            }
        }

        var prefills = prefill.Select(i =>
        {
            var c = chunks[i];
            Tensor[]? tables = null;
            if (c.Start > 0)
            {
                int needed = (c.Start + c.Tokens.Length + blockSize - 1) / blockSize;
                tables = c.Blocks.Groups.Select(g => torch.tensor(g.Take(needed).Select(b => (long)b).ToArray(), device: device).view(1, needed)).ToArray(); // [1, blocks]
            }
            return new PrefillChunk(chunkOffset[i], c.Start, c.Tokens.Length, tables);
        }).ToArray();

        return new ForwardBatch
        {
            TokenIds = torch.tensor(ids, device: device),
            Positions = torch.tensor(positions, device: device),
            CacheSlots = slots.Select(g => torch.tensor(g, device: device)).ToArray(),
            SequenceLengths = torch.tensor(lengths, device: device),
            LogitRows = torch.tensor(logitRows.ToArray(), device: device),
            DecodeCount = decode.Count,
            DecodeBlocks = decodeBlocks,
            DecodeKeyLength = keyLength,
            DecodePositions = decode.Select(i => chunks[i].Start).ToArray(),
            Prefills = prefills,
            RowChunk = rowChunk,
        };
    }
}
