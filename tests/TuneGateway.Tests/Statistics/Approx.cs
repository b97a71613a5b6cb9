namespace TuneGateway.Tests.Statistics;

/// <summary>Floating-point assertions with explicit tolerances.</summary>
internal static class Approx
{
    /// <summary>|actual - expected| ≤ relative·|expected| (or ≤ relative when expected is 0).</summary>
    public static void Relative(double expected, double actual, double relative)
    {
        double scale = expected == 0 ? 1 : Math.Abs(expected);
        double error = Math.Abs(actual - expected);
        Assert.True(error <= relative * scale,
            $"Expected {expected:R}, got {actual:R}: relative error {error / scale:G3} exceeds {relative:G3}.");
    }

    /// <summary>|actual - expected| ≤ absolute.</summary>
    public static void Absolute(double expected, double actual, double absolute)
    {
        double error = Math.Abs(actual - expected);
        Assert.True(error <= absolute, $"Expected {expected:R}, got {actual:R}: error {error:G3} exceeds {absolute:G3}.");
    }
}
