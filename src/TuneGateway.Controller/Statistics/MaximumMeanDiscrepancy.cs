using System.Numerics;

namespace TuneGateway.Controller.Statistics;

/// <summary>The result of an MMD two-sample permutation test.</summary>
/// <param name="Mmd2">The unbiased estimate MMD²_u (can be slightly negative when there is no difference).</param>
/// <param name="PValue">(1 + #{permuted MMD²_u ≥ observed}) / (1 + permutations).</param>
/// <param name="Bandwidth">σ of the RBF kernel exp(-‖x - y‖² / (2σ²)).</param>
/// <param name="Size1">m, the size of the first sample.</param>
/// <param name="Size2">n, the size of the second sample.</param>
/// <param name="Permutations">Number of random relabellings drawn.</param>
public sealed record MmdTestResult(double Mmd2, double PValue, double Bandwidth, int Size1, int Size2, int Permutations);

/// <summary>
/// Maximum mean discrepancy between two samples of vectors (e.g. mean-pooled hidden states) with
/// a Gaussian RBF kernel, and its permutation test.
/// </summary>
/// <remarks>
/// <para>Gretton, Borgwardt, Rasch, Schölkopf &amp; Smola, "A Kernel Two-Sample Test" (JMLR 2012):
/// MMD²(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y), zero iff P = Q for a characteristic kernel
/// such as the RBF kernel k(x, y) = exp(-‖x - y‖² / (2σ²)). The unbiased estimator (their Lemma 6) is
/// MMD²_u = Σ_{i≠j} k(xᵢ, xⱼ) / (m(m-1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (n(n-1)) - 2 Σ_{i,j} k(xᵢ, yⱼ) / (m n).</para>
/// <para><b>Bandwidth.</b> The median heuristic: σ = the median Euclidean distance between distinct
/// points of the pooled sample (Gretton et al. 2012, §8; analysed by Garreau, Jitkrittum &amp;
/// Kanagawa, "Large sample analysis of the median heuristic", 2017). It is computed on the pooled
/// sample, which is invariant under relabelling, so the permutation test stays exact. For pooled
/// samples above <see cref="MedianHeuristicMaxPoints"/> points an evenly strided subset is used.
/// If more than half the distances are zero (duplicated points) the root mean of the non-zero
/// squared distances is used instead, and σ = 1 if all points coincide.</para>
/// <para><b>p-value.</b> Under H₀ the pooled points are exchangeable, so the observed statistic is
/// one draw among equally likely relabellings. With B random relabellings (seeded, reproducible)
/// p = (1 + b)/(1 + B), b the number at least as large as the observed value, is a valid p-value
/// (P(p ≤ α) ≤ α for every α; Phipson &amp; Smyth, "Permutation p-values should never be zero", 2010).
/// The smallest attainable value is 1/(1 + B): B must be at least 1/α - 1 (99 for α = 0.01).</para>
/// <para><b>Cost.</b> The pooled N×N kernel matrix is computed once (N² doubles of memory,
/// N²·d/2 flops); each relabelling then costs (m² + n²)/2 look-ups, using
/// Σ_XY = Σ_all - Σ_XX - Σ_YY over the fixed total.</para>
/// </remarks>
public static class MaximumMeanDiscrepancy
{
    public const int DefaultPermutations = 200;

    /// <summary>The pooled sample is strided down to at most this many points for the median heuristic.</summary>
    public const int MedianHeuristicMaxPoints = 1000;

    /// <summary>σ by the median heuristic over the pooled sample.</summary>
    public static double MedianHeuristicBandwidth(IReadOnlyList<float[]> x, IReadOnlyList<float[]> y)
    {
        double[][] pooled = Pool(x, y, out _);
        return MedianBandwidth(pooled);
    }

    /// <summary>The unbiased estimator MMD²_u with RBF bandwidth σ.</summary>
    public static double UnbiasedMmd2(IReadOnlyList<float[]> x, IReadOnlyList<float[]> y, double bandwidth)
    {
        CheckBandwidth(bandwidth);
        double[][] pooled = Pool(x, y, out _);
        double[] kernel = KernelMatrix(pooled, bandwidth);
        int[] identity = Enumerable.Range(0, pooled.Length).ToArray();
        return Statistic(kernel, pooled.Length, x.Count, identity, TotalOffDiagonal(kernel, pooled.Length));
    }

    /// <summary>
    /// Permutation test of H₀: x and y come from one distribution. The bandwidth defaults to the
    /// median heuristic; the random relabellings come from <c>new Random(seed)</c>.
    /// </summary>
    public static MmdTestResult PermutationTest(IReadOnlyList<float[]> x, IReadOnlyList<float[]> y, int permutations = DefaultPermutations, int seed = 0, double? bandwidth = null)
    {
        if (permutations < 1) throw new ArgumentOutOfRangeException(nameof(permutations), permutations, "At least one permutation is needed.");
        double[][] pooled = Pool(x, y, out _);
        double sigma = bandwidth ?? MedianBandwidth(pooled);
        CheckBandwidth(sigma);

        int total = pooled.Length;
        int m = x.Count;
        double[] kernel = KernelMatrix(pooled, sigma);
        double offDiagonal = TotalOffDiagonal(kernel, total);
        int[] order = Enumerable.Range(0, total).ToArray();
        double observed = Statistic(kernel, total, m, order, offDiagonal);

        // Permuted statistics are summed in another order than the observed one; a relabelling that
        // reproduces the observed split must count as "at least as large" despite rounding.
        double tolerance = 1e-12 * (1 + Math.Abs(observed));
        var random = new Random(seed);
        int atLeast = 0;
        for (int b = 0; b < permutations; b++)
        {
            Shuffle(random, order);
            if (Statistic(kernel, total, m, order, offDiagonal) >= observed - tolerance) atLeast++;
        }
        double p = (1.0 + atLeast) / (1.0 + permutations);
        return new MmdTestResult(observed, p, sigma, m, y.Count, permutations);
    }

    /// <summary>Fisher–Yates shuffle (written out so that a seed gives the same relabellings on every runtime).</summary>
    private static void Shuffle(Random random, int[] values)
    {
        for (int i = values.Length - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }

    /// <summary>MMD²_u for the split "first m entries of <paramref name="order"/> are X".</summary>
    private static double Statistic(double[] kernel, int total, int m, int[] order, double offDiagonal)
    {
        int n = total - m;
        double sxx = UpperTriangleSum(kernel, total, order.AsSpan(0, m));
        double syy = UpperTriangleSum(kernel, total, order.AsSpan(m));
        double sxy = offDiagonal - sxx - syy; // Σ over pairs with one point in each group
        return 2 * sxx / ((double)m * (m - 1)) + 2 * syy / ((double)n * (n - 1)) - 2 * sxy / ((double)m * n);
    }

    /// <summary>Σ_{a &lt; b} K[idx[a], idx[b]].</summary>
    private static double UpperTriangleSum(double[] kernel, int total, ReadOnlySpan<int> indices)
    {
        double sum = 0;
        for (int a = 0; a < indices.Length; a++)
        {
            int row = indices[a] * total;
            double rowSum = 0;
            for (int b = a + 1; b < indices.Length; b++) rowSum += kernel[row + indices[b]];
            sum += rowSum;
        }
        return sum;
    }

    /// <summary>Σ_{i &lt; j} K[i, j] over all pooled pairs.</summary>
    private static double TotalOffDiagonal(double[] kernel, int total)
    {
        double sum = 0;
        for (int i = 0; i < total; i++)
        {
            double rowSum = 0;
            for (int j = i + 1; j < total; j++) rowSum += kernel[i * total + j];
            sum += rowSum;
        }
        return sum;
    }

    private static double[] KernelMatrix(double[][] points, double sigma)
    {
        int total = points.Length;
        double scale = -1 / (2 * sigma * sigma);
        var kernel = new double[total * total];
        for (int i = 0; i < total; i++)
        {
            kernel[i * total + i] = 1;
            for (int j = i + 1; j < total; j++)
            {
                double k = Math.Exp(scale * SquaredDistance(points[i], points[j]));
                kernel[i * total + j] = k;
                kernel[j * total + i] = k;
            }
        }
        return kernel;
    }

    private static double MedianBandwidth(double[][] points)
    {
        int stride = (points.Length + MedianHeuristicMaxPoints - 1) / MedianHeuristicMaxPoints;
        var subset = new List<double[]>();
        for (int i = 0; i < points.Length; i += stride) subset.Add(points[i]);

        int count = subset.Count;
        var squared = new double[count * (count - 1) / 2];
        int at = 0;
        for (int i = 0; i < count; i++)
            for (int j = i + 1; j < count; j++)
                squared[at++] = SquaredDistance(subset[i], subset[j]);
        Array.Sort(squared);
        int half = squared.Length / 2;
        double median = squared.Length % 2 == 1 ? squared[half] : 0.5 * (squared[half - 1] + squared[half]);
        if (median > 0) return Math.Sqrt(median);

        double positiveSum = 0;
        int positive = 0;
        foreach (double d in squared)
        {
            if (d > 0)
            {
                positiveSum += d;
                positive++;
            }
        }
        return positive > 0 ? Math.Sqrt(positiveSum / positive) : 1;
    }

    private static double SquaredDistance(double[] a, double[] b)
    {
        double sum = 0;
        int i = 0;
        // SIMD pays off for hidden-state sized vectors (hundreds of dimensions), not for short ones.
        if (Vector.IsHardwareAccelerated && a.Length >= 64)
        {
            int width = Vector<double>.Count;
            var acc = Vector<double>.Zero;
            for (; i <= a.Length - width; i += width)
            {
                var diff = new Vector<double>(a, i) - new Vector<double>(b, i);
                acc += diff * diff;
            }
            sum = Vector.Sum(acc);
        }
        for (; i < a.Length; i++)
        {
            double diff = a[i] - b[i];
            sum += diff * diff;
        }
        return sum;
    }

    private static double[][] Pool(IReadOnlyList<float[]> x, IReadOnlyList<float[]> y, out int dimension)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count < 2 || y.Count < 2) throw new ArgumentException("The unbiased MMD estimate needs at least two points in each sample.");
        dimension = x[0]?.Length ?? throw new ArgumentException("Null embedding.", nameof(x));
        if (dimension == 0) throw new ArgumentException("Embeddings must not be empty.", nameof(x));
        var pooled = new double[x.Count + y.Count][];
        for (int i = 0; i < pooled.Length; i++)
        {
            float[] source = i < x.Count ? x[i] : y[i - x.Count];
            if (source is null || source.Length != dimension) throw new ArgumentException($"All embeddings must have dimension {dimension}.");
            var row = new double[dimension];
            for (int k = 0; k < dimension; k++)
            {
                if (!float.IsFinite(source[k])) throw new ArgumentException("Embeddings must be finite.");
                row[k] = source[k];
            }
            pooled[i] = row;
        }
        return pooled;
    }

    private static void CheckBandwidth(double bandwidth)
    {
        if (!(bandwidth > 0) || double.IsInfinity(bandwidth)) throw new ArgumentOutOfRangeException(nameof(bandwidth), bandwidth, "The bandwidth must be positive and finite.");
    }
}
