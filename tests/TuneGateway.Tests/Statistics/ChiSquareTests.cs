using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class ChiSquareTests
{
    // Section "chi-square survival (closed forms)" of tools/stats/reference_values.py.
    [Theory]
    [InlineData(0.5, 1, 0.4795001221869535)]
    [InlineData(3.841458820694124, 1, 0.05000000000000008)]
    [InlineData(10.0, 1, 0.0015654022580025488)]
    [InlineData(50.0, 1, 1.5374597944280351e-12)]
    [InlineData(2.0, 2, 0.36787944117144233)]
    [InlineData(20.0, 2, 4.5399929762484854e-05)]
    [InlineData(7.0, 3, 0.07189777249646513)]
    [InlineData(100.0, 3, 1.5541594313896053e-21)]
    [InlineData(15.0, 9, 0.09093597657980523)]
    [InlineData(40.0, 9, 7.598525229464278e-06)]
    [InlineData(0.1, 10, 0.9999999975020487)]
    [InlineData(30.0, 10, 0.0008566412107753004)]
    [InlineData(250.0, 200, 0.009379131668826106)]
    public void SurvivalMatchesClosedForms(double x, int df, double expected)
    {
        Approx.Relative(expected, ChiSquare.Survival(x, df), 1e-12);
        Approx.Absolute(1, ChiSquare.Cdf(x, df) + ChiSquare.Survival(x, df), 1e-14);
    }

    [Fact]
    public void GoodnessOfFitComputesPearsonsStatistic()
    {
        // 60/40 against 50/50: X² = (10² + 10²)/50 = 4, df 1, p = erfc(√2).
        var result = ChiSquare.GoodnessOfFit([60, 40], [0.5, 0.5]);
        Approx.Relative(4, result.Statistic, 1e-15);
        Assert.Equal(1, result.DegreesOfFreedom);
        Approx.Relative(SpecialFunctions.Erfc(Math.Sqrt(2)), result.PValue, 1e-14);
        Assert.Equal([50.0, 50.0], result.Expected);

        // Three categories, proportions given unnormalised: expected 25/25/50 of 100.
        var three = ChiSquare.GoodnessOfFit([30, 20, 50], [1, 1, 2]);
        Approx.Relative(2, three.Statistic, 1e-15);
        Approx.Relative(Math.Exp(-1), three.PValue, 1e-14); // χ²₂ survival at 2 is e^-1
    }

    [Fact]
    public void GoodnessOfFitHandlesEmptyAndImpossibleCategories()
    {
        Assert.Equal(1, ChiSquare.GoodnessOfFit([0, 0], [0.5, 0.5]).PValue);
        var impossible = ChiSquare.GoodnessOfFit([3, 5], [1, 0]);
        Assert.Equal(0, impossible.PValue);
        Assert.Throws<ArgumentException>(() => ChiSquare.GoodnessOfFit([1], [1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChiSquare.GoodnessOfFit([-1, 2], [1, 1]));
    }
}
