using System.Text;

namespace TuneGateway.Engine.Tokenization.Unicode;

/// <summary>
/// Canonical Unicode normalization (NFC and NFD) implemented from the tables in
/// <see cref="UnicodeNormalizationData"/>.
/// </summary>
/// <remarks>
/// Hand-written because <see cref="string.Normalize(NormalizationForm)"/> silently returns its
/// input unchanged when the process runs with <c>InvariantGlobalization</c> (as this repository's
/// builds do), and Microsoft.ML.Tokenizers has no normalizer of its own for NFC.
/// The algorithm is the one of UAX #15: full canonical decomposition (Hangul algorithmically),
/// canonical ordering of combining marks, then canonical composition of primary composites.
/// </remarks>
internal static class UnicodeNormalizer
{
    private const int HangulSBase = 0xAC00, HangulLBase = 0x1100, HangulVBase = 0x1161, HangulTBase = 0x11A7;
    private const int HangulLCount = 19, HangulVCount = 21, HangulTCount = 28;
    private const int HangulNCount = HangulVCount * HangulTCount, HangulSCount = HangulLCount * HangulNCount;

    /// <summary>Code points below this value are unchanged by NFC, whatever follows them.</summary>
    private const int NfcStableBelow = 0x300;

    private static readonly Lazy<Tables> s_tables = new(BuildTables);

    /// <summary>Returns the NFC form of <paramref name="text"/>.</summary>
    public static string ToNfc(string text) => Normalize(text, compose: true);

    /// <summary>Returns the NFD form of <paramref name="text"/>.</summary>
    public static string ToNfd(string text) => Normalize(text, compose: false);

    private static string Normalize(string text, bool compose)
    {
        int stableBelow = compose ? NfcStableBelow : 0xC0;
        bool allStable = true;
        foreach (char c in text)
        {
            if (c >= stableBelow)
            {
                allStable = false;
                break;
            }
        }

        if (allStable)
        {
            return text;
        }

        Tables tables = s_tables.Value;
        var codePoints = new List<int>(text.Length + 8);
        foreach (Rune rune in text.EnumerateRunes())
        {
            Decompose(rune.Value, codePoints, tables);
        }

        SortCombiningMarks(codePoints, tables);
        if (compose)
        {
            Compose(codePoints, tables);
        }

        var builder = new StringBuilder(codePoints.Count + 4);
        foreach (int cp in codePoints)
        {
            builder.Append(new Rune(cp).ToString());
        }

        return builder.ToString();
    }

    private static void Decompose(int codePoint, List<int> output, Tables tables)
    {
        int sIndex = codePoint - HangulSBase;
        if (sIndex is >= 0 and < HangulSCount)
        {
            output.Add(HangulLBase + (sIndex / HangulNCount));
            output.Add(HangulVBase + (sIndex % HangulNCount / HangulTCount));
            int t = sIndex % HangulTCount;
            if (t != 0)
            {
                output.Add(HangulTBase + t);
            }

            return;
        }

        if (tables.Decompositions.TryGetValue(codePoint, out (int First, int Second) parts))
        {
            Decompose(parts.First, output, tables);
            if (parts.Second >= 0)
            {
                Decompose(parts.Second, output, tables);
            }

            return;
        }

        output.Add(codePoint);
    }

    /// <summary>Stable sort of every run of non-starters by combining class (canonical ordering).</summary>
    private static void SortCombiningMarks(List<int> codePoints, Tables tables)
    {
        for (int i = 1; i < codePoints.Count; i++)
        {
            int cp = codePoints[i];
            int ccc = tables.CombiningClass(cp);
            if (ccc == 0)
            {
                continue;
            }

            int j = i - 1;
            while (j >= 0)
            {
                int previous = tables.CombiningClass(codePoints[j]);
                if (previous <= ccc)
                {
                    break;
                }

                codePoints[j + 1] = codePoints[j];
                j--;
            }

            codePoints[j + 1] = cp;
        }
    }

    private static void Compose(List<int> codePoints, Tables tables)
    {
        int write = 0;
        int starter = -1;
        int lastClass = 0;
        for (int read = 0; read < codePoints.Count; read++)
        {
            int cp = codePoints[read];
            int ccc = tables.CombiningClass(cp);

            // Not blocked: adjacent to the starter, or every mark in between has a lower class.
            bool adjacent = starter == write - 1;
            if (starter >= 0 && (adjacent || (lastClass != 0 && lastClass < ccc))
                && TryCompose(codePoints[starter], cp, tables, out int composite))
            {
                codePoints[starter] = composite;
                continue;
            }

            if (ccc == 0)
            {
                starter = write;
            }

            lastClass = ccc;
            codePoints[write++] = cp;
        }

        codePoints.RemoveRange(write, codePoints.Count - write);
    }

    private static bool TryCompose(int first, int second, Tables tables, out int composite)
    {
        int lIndex = first - HangulLBase;
        if (lIndex is >= 0 and < HangulLCount)
        {
            int vIndex = second - HangulVBase;
            if (vIndex is >= 0 and < HangulVCount)
            {
                composite = HangulSBase + (((lIndex * HangulVCount) + vIndex) * HangulTCount);
                return true;
            }
        }

        int sIndex = first - HangulSBase;
        if (sIndex is >= 0 and < HangulSCount && sIndex % HangulTCount == 0)
        {
            int tIndex = second - HangulTBase;
            if (tIndex is > 0 and < HangulTCount)
            {
                composite = first + tIndex;
                return true;
            }
        }

        return tables.Compositions.TryGetValue(((long)first << 21) | (uint)second, out composite);
    }

    private static Tables BuildTables()
    {
        var decompositions = new Dictionary<int, (int, int)>();
        var compositions = new Dictionary<long, int>();
        ReadOnlySpan<int> data = UnicodeNormalizationData.Decompositions;
        for (int i = 0; i + 3 < data.Length; i += 4)
        {
            decompositions[data[i]] = (data[i + 1], data[i + 2]);
            if (data[i + 3] != 0)
            {
                compositions[((long)data[i + 1] << 21) | (uint)data[i + 2]] = data[i];
            }
        }

        return new Tables(decompositions, compositions, UnicodeNormalizationData.CombiningClassRanges.ToArray());
    }

    private sealed class Tables(
        Dictionary<int, (int First, int Second)> decompositions,
        Dictionary<long, int> compositions,
        int[] combiningClassRanges)
    {
        public Dictionary<int, (int First, int Second)> Decompositions { get; } = decompositions;

        public Dictionary<long, int> Compositions { get; } = compositions;

        /// <summary>Canonical combining class of a code point (binary search over the ranges).</summary>
        public int CombiningClass(int codePoint)
        {
            if (codePoint < 0x300)
            {
                return 0;
            }

            int lo = 0, hi = (combiningClassRanges.Length / 3) - 1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >>> 1;
                int start = combiningClassRanges[mid * 3], end = combiningClassRanges[(mid * 3) + 1];
                if (codePoint < start)
                {
                    hi = mid - 1;
                }
                else if (codePoint > end)
                {
                    lo = mid + 1;
                }
                else
                {
                    return combiningClassRanges[(mid * 3) + 2];
                }
            }

            return 0;
        }
    }
}
