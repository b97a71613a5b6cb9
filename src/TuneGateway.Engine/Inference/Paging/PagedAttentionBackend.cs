using TorchSharp;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference.Paging;

/// <summary>
/// Serving attention over the paged KV cache, for the scheduler's batch layout: each layer's new
/// keys and values are written at their token slots; decode rows (one token each, first in the
/// batch) attend together, in one call, over their block tables gathered from the pool; each
/// prefill chunk attends over its cached prefix (gathered the same way) and its own keys, with a
/// causal mask offset by the prefix. A chunk starting at position 0 uses its keys as computed,
/// with no gather. Sliding windows are masks by position (keys a window released are the null
/// block's and masked). Each layer reads its attention group's pool (<see cref="KvGroup"/>).
/// Masks and gathers are built once per forward pass: masks per distinct window, block tables
/// per batch and group; only the gathered keys are per layer.
/// </summary>
/// <remarks>
/// Prefill chunks and decode rows are separate calls: TorchSharp's scaled_dot_product_attention
/// has no variable-length form, and padding every decode row to a prefill chunk's length would
/// cost more than the extra launch.
/// </remarks>
public sealed class PagedAttentionBackend(ForwardBatch batch, PagedKvCache cache) : IAttentionBackend
{
    private readonly Dictionary<int, Tensor> _decodeMasks = [];
    private readonly Dictionary<(int Chunk, int Window, int Group), Tensor> _prefillMasks = [];

    public Tensor Attend(int layer, Tensor q, Tensor k, Tensor v, AttentionSpec spec)
    {
        int group = cache.GroupOf(layer);
        cache.Write(layer, k, v, batch.CacheSlots[group]);
        int hkv = spec.KeyValueHeads, g = spec.GroupSize, d = spec.HeadDim;
        var parts = new List<Tensor>(1 + batch.Prefills.Count);

        if (batch.DecodeCount > 0)
        {
            int rows = batch.DecodeCount;
            var qd = q.narrow(0, 0, rows).view(rows, hkv, g, d);                    // [rows, Hkv, G, D]
            var (kd, vd) = cache.Gather(layer, batch.DecodeBlocks![group], batch.DecodeKeyLength); // [rows, Hkv, length, D]
            var od = AttentionKernel.Attend(qd, kd, vd, DecodeMask(spec.Window, q.device), causal: false, spec); // [rows, Hkv, G, D]
            parts.Add(od.reshape(rows, spec.Heads * d));                             // [rows, Hq·D]
        }

        for (int i = 0; i < batch.Prefills.Count; i++)
        {
            var chunk = batch.Prefills[i];
            int t = chunk.Length, keysLength = chunk.Start + t;
            // [T, Hq, D] -> [1, Hkv, G·T, D]: the G query heads sharing a key/value head become
            // extra query rows, so GQA needs no copy of the keys.
            var qp = q.narrow(0, chunk.Offset, t).view(t, hkv, g, d)                // [T, Hkv, G, D]
                .permute(1, 2, 0, 3).reshape(1, hkv, g * t, d);                      // [1, Hkv, G·T, D]
            Tensor kp, vp;                                                           // [1, Hkv, start+T, D]
            if (chunk.Blocks is { } tables)
            {
                (kp, vp) = cache.Gather(layer, tables[group], keysLength);
            }
            else
            {
                kp = k.narrow(0, chunk.Offset, t).permute(1, 0, 2).unsqueeze(0);      // [T, Hkv, D] -> [1, Hkv, T, D]
                vp = v.narrow(0, chunk.Offset, t).permute(1, 0, 2).unsqueeze(0);
            }
            var op = AttentionKernel.Attend(qp, kp, vp, PrefillMask(i, chunk, spec.Window, g, q.device), causal: false, spec); // [1, Hkv, G·T, D]
            parts.Add(op.view(hkv, g, t, d).permute(2, 0, 1, 3).reshape(t, spec.Heads * d)); // [T, Hq·D]
        }
        return parts.Count == 1 ? parts[0] : torch.cat(parts, 0);                    // [N, Hq·D]
    }

    /// <summary>[decode rows, 1, 1, key length], true where a row may attend.</summary>
    private Tensor DecodeMask(int? window, Device device)
    {
        int w = window ?? int.MaxValue;
        if (_decodeMasks.TryGetValue(w, out var cached)) return cached;
        int rows = batch.DecodeCount, length = batch.DecodeKeyLength;
        var mask = new bool[rows * length];
        for (int j = 0; j < rows; j++)
        {
            int position = batch.DecodePositions[j];
            int first = Math.Max(0, position - w + 1);
            for (int k = first; k <= position; k++) mask[j * length + k] = true;
        }
        return _decodeMasks[w] = torch.tensor(mask, device: device).view(rows, 1, 1, length);
    }

    /// <summary>
    /// [G·T, start+T]: query row (g, t) at position start+t sees keys 0..start+t (within the
    /// sliding window, if any). Rows are repeated per query head of a key/value group.
    /// </summary>
    private Tensor PrefillMask(int index, PrefillChunk chunk, int? window, int groups, Device device)
    {
        int w = window ?? int.MaxValue;
        if (_prefillMasks.TryGetValue((index, w, groups), out var cached)) return cached;
        int start = chunk.Start, length = chunk.Length;
        var queryPositions = torch.arange(start, start + length, dtype: ScalarType.Int64, device: device).unsqueeze(1);  // [T, 1]
        var keyPositions = torch.arange(0, start + length, dtype: ScalarType.Int64, device: device).unsqueeze(0);        // [1, start+T]
        var mask = keyPositions <= queryPositions;
        if (window is int win) mask = mask.logical_and(keyPositions > queryPositions - win);
        if (groups > 1) mask = mask.unsqueeze(0).expand(groups, length, start + length).reshape(groups * length, start + length);
        return _prefillMasks[(index, w, groups)] = mask;
    }
}
