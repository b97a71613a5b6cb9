using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class RateLimitTestTests
{
    // Section "guardrail e-value ln M" of tools/stats/reference_values.py: the mixture integral
    // expanded as a polynomial and integrated in exact rationals.
    [Theory]
    [InlineData(0, 10, 0.05, -0.7157864845693551)]
    [InlineData(3, 0, 0.02, 3.056356895370426)]
    [InlineData(5, 95, 0.05, -1.5025563724886866)]
    [InlineData(12, 188, 0.05, -1.3039777645096053)]
    [InlineData(30, 270, 0.05, 4.955805277314939)]
    [InlineData(2, 500, 0.01, -2.3334435041165036)]
    [InlineData(60, 140, 0.3, -2.8182196108524287)]
    [InlineData(0, 3000, 0.02, -5.21349283599785)]
    [InlineData(400, 1600, 0.05, 276.94522599801576)]
    public void LogEValueMatchesExactIntegration(long events, long nonEvents, double limit, double expected)
        => Approx.Absolute(expected, RateLimitTest.LogEValue(events, events + nonEvents, limit), 1e-9 * Math.Max(1, Math.Abs(expected)));

    [Fact]
    public void ThreeFailuresInThreeRequestsBreachATwoPercentLimit()
    {
        Assert.True(RateLimitTest.Test(3, 3, 0.02, alpha: 0.05).Exceeded);
        Assert.False(RateLimitTest.Test(3, 3, 0.02, alpha: 0.01).Exceeded); // M ≈ 21 < 100
        Assert.False(RateLimitTest.Test(1, 1, 0.02, alpha: 0.05).Exceeded);
    }

    [Fact]
    public void AtTheLimitContinuousMonitoringRarelyBreaches()
    {
        // True rate exactly at the limit, checked after every 5th request up to 2000: Ville's
        // inequality bounds the chance of ever breaching by α = 0.05. 400 runs: the count is at most
        // Binomial(400, 0.05) (mean 20, sd 4.4); allow 20 + 3 sd = 33.
        const double limit = 0.05;
        var random = new Random(21);
        int breached = 0;
        for (int run = 0; run < 400; run++)
        {
            long events = 0;
            for (int n = 1; n <= 2000; n++)
            {
                if (random.NextDouble() < limit) events++;
                if (n % 5 == 0 && RateLimitTest.Test(events, n, limit, 0.05).Exceeded)
                {
                    breached++;
                    break;
                }
            }
        }
        Assert.InRange(breached, 0, 33);
    }

    [Fact]
    public void ATripledRateIsCaughtQuickly()
    {
        var random = new Random(22);
        int caught = 0;
        for (int run = 0; run < 100; run++)
        {
            long events = 0;
            for (int n = 1; n <= 600; n++)
            {
                if (random.NextDouble() < 0.15) events++;
                if (RateLimitTest.Test(events, n, 0.05, 0.01).Exceeded)
                {
                    caught++;
                    break;
                }
            }
        }
        Assert.InRange(caught, 95, 100);
    }

    [Theory]
    [InlineData(1, 0.05)]
    [InlineData(50, 0.05)]
    [InlineData(1000, 0.01)]
    [InlineData(1_000_000, 0.01)]
    public void NoEventsMatchTheClosedForm(long trials, double limit)
    {
        // With S = 0 the integral is elementary: M = (1-p₀)(1 - ((1-b)/(1-p₀))^(F+1)) / ((F+1)(b-p₀)),
        // b = 4p₀. An e-value cannot go much below 1/n: evidence for H₀ accumulates only slowly.
        double b = 4 * limit;
        double f = trials;
        double expected = Math.Log((1 - limit) * (1 - Math.Pow((1 - b) / (1 - limit), f + 1)) / ((f + 1) * (b - limit)));
        Approx.Relative(expected, RateLimitTest.LogEValue(0, trials, limit), 1e-11);
    }

    [Fact]
    public void EdgeCases()
    {
        Assert.Equal(0, RateLimitTest.LogEValue(0, 0, 0.05));
        Assert.False(RateLimitTest.Test(0, 0, 0.05, 0.01).Exceeded);
        Assert.True(RateLimitTest.Test(1, 1000, 0, 0.01).Exceeded);
        Assert.False(RateLimitTest.Test(0, 1000, 0, 0.01).Exceeded);
        Assert.False(RateLimitTest.Test(1000, 1000, 1, 0.01).Exceeded);
        // Every request failing, far beyond the prior's upper end, is still overwhelming evidence.
        Assert.True(RateLimitTest.LogEValue(100_000, 100_000, 0.01) > 1000);
        Assert.Throws<ArgumentOutOfRangeException>(() => RateLimitTest.LogEValue(5, 4, 0.1));
    }
}
