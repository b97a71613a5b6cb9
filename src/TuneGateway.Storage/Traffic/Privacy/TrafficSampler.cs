namespace TuneGateway.Storage;

/// <summary>
/// Deterministic sampling: whether an id is in the sample depends only on the id and the rate, so the
/// request and its later feedback agree, across processes and restarts.
/// </summary>
public static class TrafficSampler
{
    /// <summary>Whether <paramref name="id"/> falls inside a sample of the given <paramref name="rate"/> (0…1).</summary>
    public static bool IsSampled(string id, double rate)
    {
        ArgumentNullException.ThrowIfNull(id);
        if (rate >= 1)
        {
            return true;
        }

        if (!(rate > 0))
        {
            return false;
        }

        return UnitInterval(id) < rate;
    }

    /// <summary>Maps an id to a stable, uniformly spread number in [0, 1).</summary>
    internal static double UnitInterval(string id)
    {
        // FNV-1a over the UTF-16 code units, then the MurmurHash3 finaliser to spread FNV's weak high bits.
        var hash = 14695981039346656037UL;
        foreach (var c in id)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        hash ^= hash >> 33;
        hash *= 0xff51afd7ed558ccdUL;
        hash ^= hash >> 33;
        hash *= 0xc4ceb9fe1a85ec53UL;
        hash ^= hash >> 33;
        return (hash >> 11) * (1.0 / (1UL << 53));
    }
}
