using TuneGateway.Engine.Models;

namespace TuneGateway.Engine.Inference.Paging;

/// <summary>
/// Layers whose attention sees the same keys: all of them for most models; for a model that mixes
/// sliding-window and global layers (Gemma 2/3), one group per kind. Each group has a KV pool and
/// block tables of its own, so the windowed group can give its old blocks back.
/// </summary>
/// <param name="Window">The group's sliding window; null: the layers see the whole sequence.</param>
/// <param name="Layers">The model's layer indices, ascending.</param>
public sealed record KvGroup(int? Window, IReadOnlyList<int> Layers)
{
    /// <summary>The groups of a model, full-attention layers first.</summary>
    public static KvGroup[] Of(ModelConfig config) =>
        Enumerable.Range(0, config.NumLayers)
            .GroupBy(config.WindowOf)
            .OrderBy(g => g.Key.HasValue).ThenBy(g => g.Key)
            .Select(g => new KvGroup(g.Key, g.ToArray()))
            .ToArray();
}

/// <summary>A sequence's block table in each <see cref="KvGroup"/>, as a forward pass reads them (same length in every group).</summary>
public sealed record BlockTables(int[][] Groups)
{
    public int Length => Groups[0].Length;
}
