using TuneGateway.Controller.Statistics;
using Xunit.Abstractions;

namespace TuneGateway.Tests.Statistics;

public class MixtureSequentialTestTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(0.0, 1e-4, 0.03)]
    [InlineData(0.02, 1e-4, 0.03)]
    [InlineData(-0.05, 4e-4, 0.01)]
    [InlineData(0.3, 0.01, 0.5)]
    public void LikelihoodRatioEqualsTheMixtureIntegral(double estimate, double variance, double tau)
    {
        // Λ = ∫ N(θ̂; θ, V) N(θ; 0, τ²) dθ / N(θ̂; 0, V), integrated numerically (Simpson, 20 001 points
        // over ±12 standard deviations of the posterior) instead of the closed form.
        double postVar = 1 / (1 / variance + 1 / (tau * tau));
        double postMean = postVar * estimate / variance;
        double half = 12 * Math.Sqrt(postVar);
        const int intervals = 20000;
        double h = 2 * half / intervals;
        double sum = 0;
        for (int i = 0; i <= intervals; i++)
        {
            double theta = postMean - half + i * h;
            double weight = i == 0 || i == intervals ? 1 : i % 2 == 1 ? 4 : 2;
            // Ratio of the two normal likelihoods in θ̂, times the mixing density.
            double logRatio = (-(estimate - theta) * (estimate - theta) + estimate * estimate) / (2 * variance);
            sum += weight * Math.Exp(logRatio - theta * theta / (2 * tau * tau)) / Math.Sqrt(2 * Math.PI * tau * tau);
        }
        double integral = sum * h / 3;
        Approx.Relative(Math.Log(integral), MixtureSequentialTest.LogLikelihoodRatio(estimate, variance, tau), 1e-9);
    }

    [Fact]
    public void ConfidenceSequenceEndsAreWhereTheLikelihoodRatioReachesOneOverAlpha()
    {
        const double v = 2.5e-4;
        const double tau = 0.03;
        const double alpha = 0.05;
        double h = MixtureSequentialTest.HalfWidth(v, tau, alpha);
        Approx.Relative(Math.Log(1 / alpha), MixtureSequentialTest.LogLikelihoodRatio(0.01, v, tau, theta0: 0.01 + h), 1e-12);
        Approx.Relative(Math.Log(1 / alpha), MixtureSequentialTest.LogLikelihoodRatio(0.01, v, tau, theta0: 0.01 - h), 1e-12);
        // Wider than the fixed-horizon 95% interval (1.96 √V), the price of looking at every step.
        Assert.True(h > 1.96 * Math.Sqrt(v));
    }

    [Fact]
    public void PValueIsNonIncreasingAndTheRunningIntervalsAreNested()
    {
        var random = new Random(31);
        SequentialTestState? state = null;
        double previousP = 1;
        double previousLower = double.NegativeInfinity;
        double previousUpper = double.PositiveInfinity;
        long a = 0, b = 0;
        for (int n = 1; n <= 20000; n++)
        {
            if (random.NextDouble() < 0.10) a++;
            if (random.NextDouble() < 0.11) b++;
            if (n % 200 != 0) continue;
            var look = MixtureSequentialTest.CompareProportions(a, n, b, n, tau: 0.03, alpha: 0.05, state);
            Assert.True(look.PValue <= previousP);
            Assert.True(look.Lower >= previousLower && look.Upper <= previousUpper);
            // Duality: 0 has left the running interval exactly when the running p-value reached α.
            Assert.Equal(look.PValue <= 0.05, look.Lower > 0 || look.Upper < 0);
            (previousP, previousLower, previousUpper, state) = (look.PValue, look.Lower, look.Upper, look.State);
        }
        Assert.Equal(100, state!.Looks);
    }

    [Fact]
    public void UnderTheNullContinuousPeekingKeepsTheFalsePositiveRateBelowAlpha()
    {
        // 1000 A/A runs of 10 000 requests per arm at a 10% rate, a look after every 100: the mSPRT
        // must reject in at most α = 5% of runs (Ville's inequality; the count is Binomial(1000, ≤ 0.05),
        // sd ≤ 6.9, so 50 leaves no room for an inflated rate). A fixed-horizon z-test peeked at the
        // same looks rejects far more often: the simulation can tell the difference.
        var random = new Random(41);
        int msprt = 0;
        int naive = 0;
        const int runs = 1000;
        for (int run = 0; run < runs; run++)
        {
            SequentialTestState? state = null;
            bool naiveRejected = false;
            long a = 0, b = 0;
            for (int n = 100; n <= 10000; n += 100)
            {
                a += Sampling.Binomial(random, 100, 0.10);
                b += Sampling.Binomial(random, 100, 0.10);
                state = MixtureSequentialTest.CompareProportions(a, n, b, n, tau: 0.03, alpha: 0.05, state).State;
                double pooled = (a + b) / (2.0 * n);
                double z = (b - a) / (double)n / Math.Sqrt(pooled * (1 - pooled) * 2 / n);
                naiveRejected |= Math.Abs(z) > 1.959963984540054;
            }
            if (state!.Direction != 0) msprt++;
            if (naiveRejected) naive++;
        }
        output.WriteLine($"A/A proportions, 100 looks: mSPRT rejected {msprt}/{runs}, peeked z-test {naive}/{runs}");
        Assert.InRange(msprt, 0, 50);
        Assert.True(naive > 150, $"The peeked z-test rejected only {naive} of {runs} A/A runs.");
    }

    [Fact]
    public void DetectsARealDifferenceInTheRightDirection()
    {
        var random = new Random(43);
        int better = 0;
        int worse = 0;
        for (int run = 0; run < 100; run++)
        {
            SequentialTestState? state = null;
            long a = 0, b = 0;
            for (int n = 100; n <= 10000 && state?.Direction is null or 0; n += 100)
            {
                a += Sampling.Binomial(random, 100, 0.10);
                b += Sampling.Binomial(random, 100, 0.13);
                state = MixtureSequentialTest.CompareProportions(a, n, b, n, 0.03, 0.05, state).State;
            }
            if (state!.Direction > 0) better++;
            if (state.Direction < 0) worse++;
        }
        output.WriteLine($"10% vs 13%: better {better}/100, worse {worse}/100");
        // Fixed-n power of a 3-point difference at 10 000 per arm is essentially 1; the mSPRT pays some.
        Assert.InRange(better, 90, 100);
        Assert.Equal(0, worse);
    }

    [Fact]
    public void MeansUnderTheNullAndUnderADifference()
    {
        // A skewed metric in [0, 1] (the square of a uniform: mean 1/3, variance 4/45).
        var random = new Random(47);
        int falsePositives = 0;
        int detected = 0;
        for (int run = 0; run < 300; run++)
        {
            foreach (double shift in new[] { 0.0, 0.04 })
            {
                var control = MetricSummary.Empty;
                var candidate = MetricSummary.Empty;
                SequentialTestState? state = null;
                for (int n = 1; n <= 3000; n++)
                {
                    double u = random.NextDouble();
                    control = control.Add(u * u);
                    double w = random.NextDouble();
                    candidate = candidate.Add(Math.Min(1, w * w + shift));
                    if (n % 50 == 0 && n >= 200)
                        state = MixtureSequentialTest.CompareMeans(control, candidate, tau: 0.05, alpha: 0.05, priorVariance: 0.25, state).State;
                }
                if (shift == 0 && state!.Direction != 0) falsePositives++;
                if (shift > 0 && state!.Direction > 0) detected++;
            }
        }
        output.WriteLine($"Means: false positives {falsePositives}/300, detected +0.04 in {detected}/300");
        // Binomial(300, ≤ 0.05): mean ≤ 15, sd ≤ 3.8.
        Assert.InRange(falsePositives, 0, 15);
        Assert.InRange(detected, 270, 300);
    }

    [Fact]
    public void ZeroCountsAndAllSuccessesStayFinite()
    {
        var none = MixtureSequentialTest.CompareProportions(0, 1000, 0, 1000, 0.03, 0.05, null);
        Assert.Equal(0, none.Estimate);
        Assert.Equal(1, none.PValue);
        Assert.True(double.IsFinite(none.Lower) && none.Lower < 0 && none.Upper > 0);

        var all = MixtureSequentialTest.CompareProportions(1000, 1000, 1000, 1000, 0.03, 0.05, null);
        Assert.Equal(1, all.PValue);
        Assert.False(all.Rejected);

        // None on control, all on the candidate: a certain difference, found without an infinite Λ.
        var extreme = MixtureSequentialTest.CompareProportions(0, 1000, 1000, 1000, 0.03, 0.05, null);
        Assert.True(double.IsFinite(extreme.LogLikelihoodRatio));
        Assert.Equal(1, extreme.Direction);

        var constantMetric = MixtureSequentialTest.CompareMeans(MetricSummary.FromValues([1, 1, 1]), MetricSummary.FromValues([1, 1, 1]), 0.05, 0.05, 0.25, null);
        Assert.Equal(1, constantMetric.PValue);
        Assert.Throws<ArgumentException>(() => MixtureSequentialTest.CompareProportions(0, 0, 1, 10, 0.03, 0.05, null));
    }

    [Fact]
    public void ADirectionOnceFoundIsKept()
    {
        var first = MixtureSequentialTest.CompareProportions(100, 1000, 200, 1000, 0.03, 0.05, null);
        Assert.Equal(1, first.Direction);
        // Later data pointing the other way do not flip the decision, and the p-value stays at its minimum.
        var later = MixtureSequentialTest.CompareProportions(1000, 5000, 900, 5000, 0.03, 0.05, first.State);
        Assert.Equal(1, later.Direction);
        Assert.Equal(first.PValue, later.PValue);
    }
}
