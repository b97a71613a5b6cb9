using TorchSharp;
using TuneGateway.Engine.Models;
using static TorchSharp.torch;

namespace TuneGateway.Engine.Inference;

/// <summary>
/// Serving attention over the contiguous KV cache, for the scheduler's batch layout: each layer's
/// new keys and values are written at their (slot, position); decode rows (one token each,
/// first in the batch) attend together over a view of their slots, prefill chunks one by one
/// with a causal mask offset by what the slot already holds. Sliding windows are masks by
/// position: the cache keeps every token, a windowed layer just does not look at old ones.
/// Masks are built once per distinct window per forward pass, not per layer.
/// </summary>
public sealed class CachedAttentionBackend(ForwardBatch batch, KvCache cache) : IAttentionBackend
{
    private readonly Dictionary<int, Tensor> _decodeMasks = [];
    private readonly Dictionary<(int Chunk, int Window, int Group), Tensor> _prefillMasks = [];

    public Tensor Attend(int layer, Tensor q, Tensor k, Tensor v, AttentionSpec spec)
    {
        cache.Write(layer, k, v, batch.CacheSlots, batch.Positions);
        var (keys, values) = cache.Layer(layer);                                     // [slots, Hkv, L, D]
        int hkv = spec.KeyValueHeads, g = spec.GroupSize, d = spec.HeadDim;
        var parts = new List<Tensor>(1 + batch.Prefills.Count);

        if (batch.DecodeCount > 0)
        {
            int rows = batch.DecodeCount, length = batch.DecodeKeyLength;
            var qd = q.narrow(0, 0, rows).view(rows, hkv, g, d);                    // [rows, Hkv, G, D]
            Tensor kd, vd;                                                           // [rows, Hkv, length, D]
            if (batch.DecodeSlotStart is int start)
            {
                kd = keys.narrow(0, start, rows).narrow(2, 0, length);
                vd = values.narrow(0, start, rows).narrow(2, 0, length);
            }
            else
            {
                kd = keys.index_select(0, batch.DecodeSlots!).narrow(2, 0, length);
                vd = values.index_select(0, batch.DecodeSlots!).narrow(2, 0, length);
            }
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
            var kp = keys[chunk.Slot].narrow(1, 0, keysLength).unsqueeze(0);          // [1, Hkv, start+T, D]
            var vp = values[chunk.Slot].narrow(1, 0, keysLength).unsqueeze(0);
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
