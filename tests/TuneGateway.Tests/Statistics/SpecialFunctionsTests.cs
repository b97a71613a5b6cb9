using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

/// <summary>
/// Special functions against independent values: CPython's libm (lgamma, erfc), closed forms, and
/// exact rational arithmetic, all printed by tools/stats/reference_values.py (section named per test).
/// </summary>
public class SpecialFunctionsTests
{
    // Section "lgamma (math.lgamma)".
    [Theory]
    [InlineData(0.001, 6.907178885383854)]
    [InlineData(0.5, 0.5723649429247004)]
    [InlineData(1.5, -0.12078223763524543)]
    [InlineData(3.7, 1.4280723266653883)]
    [InlineData(9.99, 12.779315214350197)]
    [InlineData(10.0, 12.801827480081467)]
    [InlineData(25.3, 55.746181183584596)]
    [InlineData(171.2, 707.6009268476702)]
    [InlineData(1e5, 1051287.7089736566)]
    public void LogGammaMatchesLibm(double x, double expected) => Approx.Relative(expected, SpecialFunctions.LogGamma(x), 1e-13);

    [Fact]
    public void LogGammaIsZeroAtOneAndTwoAndFollowsTheRecurrence()
    {
        // Within a few ulps of ln 9! ≈ 12.8, which the shift to x ≥ 10 subtracts.
        Approx.Absolute(0, SpecialFunctions.LogGamma(1), 1e-14);
        Approx.Absolute(0, SpecialFunctions.LogGamma(2), 1e-14);
        // ln Γ(x + 1) = ln Γ(x) + ln x across the shift boundary at 10.
        foreach (double x in new[] { 0.3, 4.2, 9.5, 9.999, 10.5, 33.3 })
            Approx.Absolute(SpecialFunctions.LogGamma(x) + Math.Log(x), SpecialFunctions.LogGamma(x + 1), 1e-13 * Math.Max(1, Math.Abs(SpecialFunctions.LogGamma(x + 1))));
        Assert.Throws<ArgumentOutOfRangeException>(() => SpecialFunctions.LogGamma(0));
    }

    // Section "erfc (math.erfc)".
    [Theory]
    [InlineData(-2.0, 1.9953222650189528)]
    [InlineData(-0.3, 1.3286267594591274)]
    [InlineData(0.0, 1.0)]
    [InlineData(1e-8, 0.9999999887162083)]
    [InlineData(0.1, 0.8875370839817152)]
    [InlineData(0.5, 0.4795001221869535)]
    [InlineData(1.0, 0.15729920705028513)]
    [InlineData(2.5, 0.0004069520174449589)]
    [InlineData(6.0, 2.1519736712498916e-17)]
    [InlineData(10.0, 2.088487583762545e-45)]
    [InlineData(26.0, 5.663192408856143e-296)]
    public void ErfcMatchesLibmWithRelativeAccuracyInTheTail(double x, double expected) => Approx.Relative(expected, SpecialFunctions.Erfc(x), 1e-13);

    [Fact]
    public void NormalTailsAreComplementaryAndSymmetric()
    {
        foreach (double z in new[] { -3.0, -1.0, 0.0, 0.5, 1.959963984540054, 4.0 })
        {
            Approx.Absolute(1, SpecialFunctions.NormalCdf(z) + SpecialFunctions.NormalSurvival(z), 1e-15);
            Approx.Relative(SpecialFunctions.NormalSurvival(z), SpecialFunctions.NormalCdf(-z), 1e-14);
        }
        // The two-sided 5% point of the standard normal.
        Approx.Relative(0.025, SpecialFunctions.NormalSurvival(1.959963984540054), 1e-12);
    }

    // Section "regularized incomplete beta (exact binomial tail)".
    [Theory]
    [InlineData(0.3, 2, 3, 0.3483, -1.0546911016101816)]
    [InlineData(0.5, 5, 5, 0.5, -0.6931471805599453)]
    [InlineData(0.9, 1, 7, 0.9999999, -1.0000000500000033e-07)]
    [InlineData(0.02, 3, 40, 0.05154954039237617, -2.9652119843227127)]
    [InlineData(0.7, 30, 12, 0.40104779034961, -0.913674680847491)]
    [InlineData(0.01, 40, 900, 6.500975961833555e-14, -30.364238988311733)]
    public void IncompleteBetaMatchesExactBinomialTails(double x, double a, double b, double expected, double expectedLog)
    {
        Approx.Relative(expected, SpecialFunctions.RegularizedIncompleteBeta(x, a, b), 1e-12);
        Approx.Relative(expectedLog, SpecialFunctions.LogRegularizedIncompleteBeta(x, a, b), 1e-10);
        // Symmetry I_x(a, b) = 1 - I_(1-x)(b, a).
        Approx.Absolute(1 - SpecialFunctions.RegularizedIncompleteBeta(1 - x, b, a), SpecialFunctions.RegularizedIncompleteBeta(x, a, b), 1e-14);
    }

    [Fact]
    public void LogIncompleteBetaStaysFiniteWhereTheValueUnderflows()
    {
        // I_0.001(800, 200) ≈ C(999, 800) 0.001^800 … ≈ 1e-2200: far below double range, fine in logs.
        double log = SpecialFunctions.LogRegularizedIncompleteBeta(0.001, 800, 200);
        Assert.True(double.IsFinite(log));
        Assert.InRange(log, -5200, -4900);
        Assert.Equal(0, SpecialFunctions.RegularizedIncompleteBeta(0.001, 800, 200));
    }

    [Fact]
    public void IncompleteGammaMatchesClosedFormsForIntegerShapes()
    {
        // Q(1, x) = e^-x; Q(3, x) = e^-x (1 + x + x²/2).
        foreach (double x in new[] { 0.01, 0.7, 3.0, 15.0, 80.0 })
        {
            Approx.Relative(Math.Exp(-x), SpecialFunctions.RegularizedGammaQ(1, x), 1e-13);
            Approx.Relative(Math.Exp(-x) * (1 + x + x * x / 2), SpecialFunctions.RegularizedGammaQ(3, x), 1e-13);
            Approx.Absolute(1, SpecialFunctions.RegularizedGammaP(3, x) + SpecialFunctions.RegularizedGammaQ(3, x), 1e-15);
        }
    }

    // Section "Kolmogorov survival": each value from the other theta-function series than the one
    // the C# code uses at that λ (the two are equal by Jacobi's identity), in 60-digit decimals.
    [Theory]
    [InlineData(0.3, 0.9999906941986655)]
    [InlineData(0.5, 0.9639452436648751)]
    [InlineData(0.8, 0.5441424115741982)]
    [InlineData(0.99, 0.2808738392255489)]
    [InlineData(1.0, 0.2699996716773545)]
    [InlineData(1.2238, 0.10002342783567782)]
    [InlineData(1.3581, 0.049999630431667434)]
    [InlineData(1.6276, 0.010001537333060768)]
    [InlineData(2.0, 0.0006709252557796953)]
    [InlineData(3.0, 3.045995948942526e-08)]
    public void KolmogorovSurvivalMatchesTheOtherSeries(double lambda, double expected)
        => Approx.Relative(expected, SpecialFunctions.KolmogorovSurvival(lambda), 1e-12);

    [Fact]
    public void KolmogorovSurvivalIsMonotoneAcrossTheSeriesSwitch()
    {
        double previous = 1;
        for (double lambda = 0.05; lambda < 4; lambda += 0.001)
        {
            double q = SpecialFunctions.KolmogorovSurvival(lambda);
            Assert.InRange(q, 0, previous);
            previous = q;
        }
    }

    [Fact]
    public void Log1PAndExpM1KeepPrecisionNearZero()
    {
        Approx.Relative(1e-12 - 0.5e-24, SpecialFunctions.Log1P(1e-12), 1e-15);
        Approx.Relative(1e-12 + 0.5e-24, SpecialFunctions.ExpM1(1e-12), 1e-15);
        Approx.Relative(Math.Log(1.5), SpecialFunctions.Log1P(0.5), 1e-15);
        Approx.Relative(Math.Exp(-2) - 1, SpecialFunctions.ExpM1(-2), 1e-15);
    }
}
