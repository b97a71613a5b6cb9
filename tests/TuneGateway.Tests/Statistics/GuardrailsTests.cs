using TuneGateway.Controller.Statistics;

namespace TuneGateway.Tests.Statistics;

public class GuardrailsTests
{
    private static readonly ArmObservations HealthyControl = new() { Requests = 5000, Errors = 50, NegativeFeedback = 100 };

    [Fact]
    public void ErrorRateFiresOnABreachAndNotWithinTheLimit()
    {
        var settings = new GuardrailSettings { MaxErrorRate = 0.05 };
        var breach = Single(settings, new ArmObservations { Requests = 1000, Errors = 100 });
        Assert.True(breach.Breached);
        Assert.Equal(0.1, breach.Observed);
        Assert.True(breach.PValue < 0.01);

        Assert.False(Single(settings, new ArmObservations { Requests = 1000, Errors = 40 }).Breached);
        // Observed above the limit but not by enough to be sure: no rollback yet.
        Assert.False(Single(settings, new ArmObservations { Requests = 200, Errors = 12 }).Breached);

        var empty = Single(settings, new ArmObservations());
        Assert.False(empty.Breached);
        Assert.Null(empty.Observed);
    }

    [Fact]
    public void NegativeFeedbackRateFires()
    {
        var settings = new GuardrailSettings { MaxErrorRate = null, MaxNegativeFeedbackRate = 0.1 };
        Assert.True(Single(settings, new ArmObservations { Requests = 500, NegativeFeedback = 100 }).Breached);
        Assert.False(Single(settings, new ArmObservations { Requests = 500, NegativeFeedback = 40 }).Breached);
    }

    [Fact]
    public void LatencyQuantilesFireWhenTooManyRequestsAreSlowerThanTheLimit()
    {
        var random = new Random(61);
        // Exponential latencies with mean μ have p95 = μ ln 20 ≈ 3.0 μ.
        double[] slow = Exponential(random, 400, mean: 300);   // p95 ≈ 900 ms
        double[] fast = Exponential(random, 400, mean: 100);   // p95 ≈ 300 ms
        var settings = new GuardrailSettings { MaxErrorRate = null, MaxP95LatencyMs = 500, MaxP95TimeToFirstTokenMs = 500 };

        var results = Guardrails.Evaluate(settings, HealthyControl, new ArmObservations { Requests = 400, LatenciesMs = slow, TimeToFirstTokenMs = fast });
        var latency = results.Single(r => r.Name == "p95_latency_ms");
        var ttft = results.Single(r => r.Name == "p95_ttft_ms");
        Assert.True(latency.Breached);
        Assert.InRange(latency.Observed!.Value, 700, 1100);
        Assert.False(ttft.Breached);
        Assert.InRange(ttft.Observed!.Value, 230, 380);
    }

    [Fact]
    public void ALatencyExactlyAtTheLimitIsRarelyRolledBackDespiteConstantChecking()
    {
        // True p95 exactly at the limit (exponential, mean 100: p95 = 100 ln 20), checked after every
        // 100 requests up to 2000, 100 runs, α = 0.05: ever breaching is at most Binomial(100, 0.05)
        // (mean ≤ 5, sd ≤ 2.2); allow 12.
        var settings = new GuardrailSettings { MaxErrorRate = null, MaxP95LatencyMs = 100 * Math.Log(20), Alpha = 0.05 };
        var random = new Random(62);
        int breached = 0;
        for (int run = 0; run < 100; run++)
        {
            var latencies = new List<double>();
            for (int n = 1; n <= 2000; n++)
            {
                latencies.Add(-100 * Math.Log(1 - random.NextDouble()));
                if (n % 100 != 0) continue;
                if (Single(settings, new ArmObservations { Requests = n, LatenciesMs = latencies }).Breached)
                {
                    breached++;
                    break;
                }
            }
        }
        Assert.InRange(breached, 0, 12);
    }

    [Fact]
    public void RelativeErrorIncreaseComparesWithControl()
    {
        var settings = new GuardrailSettings { MaxErrorRate = null, MaxErrorRateIncrease = 0.01, MinSamplesForRelative = 200 };
        // Control 1%, candidate 5%: an increase of 4 points against 1 allowed.
        Assert.True(Single(settings, new ArmObservations { Requests = 1000, Errors = 50 }).Breached);
        // Candidate 1.5%: within the allowed increase.
        Assert.False(Single(settings, new ArmObservations { Requests = 1000, Errors = 15 }).Breached);
        var early = Single(settings, new ArmObservations { Requests = 100, Errors = 50 });
        Assert.False(early.Evaluated);
        Assert.False(early.Breached);
    }

    [Fact]
    public void RelativeLatencyComparesWithControlsQuantile()
    {
        var random = new Random(63);
        var control = HealthyControl with { LatenciesMs = Exponential(random, 2000, mean: 100) };
        var settings = new GuardrailSettings { MaxErrorRate = null, MaxP95LatencyRatio = 1.5 };

        var doubled = Guardrails.Evaluate(settings, control, new ArmObservations { Requests = 300, LatenciesMs = Exponential(random, 300, mean: 200) }).Single();
        Assert.True(doubled.Breached);
        Assert.InRange(doubled.Limit!.Value, 1.5 * 250, 1.5 * 350);

        var same = Guardrails.Evaluate(settings, control, new ArmObservations { Requests = 300, LatenciesMs = Exponential(random, 300, mean: 100) }).Single();
        Assert.False(same.Breached);

        var noControl = Guardrails.Evaluate(settings, HealthyControl, new ArmObservations { Requests = 300, LatenciesMs = Exponential(random, 300, mean: 200) }).Single();
        Assert.False(noControl.Evaluated);
        Assert.Null(noControl.Limit);
    }

    [Fact]
    public void RejectsInconsistentObservationsAndSettings()
    {
        Assert.Throws<ArgumentException>(() => Guardrails.Evaluate(new GuardrailSettings(), HealthyControl, new ArmObservations { Requests = 10, Errors = 11 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Guardrails.Evaluate(new GuardrailSettings { MaxErrorRate = 1.5 }, HealthyControl, HealthyControl));
        Assert.Throws<ArgumentException>(() => Guardrails.Evaluate(new GuardrailSettings { MaxP95LatencyMs = 10 }, HealthyControl, new ArmObservations { Requests = 1, LatenciesMs = [double.NaN] }));
    }

    private static GuardrailResult Single(GuardrailSettings settings, ArmObservations candidate)
        => Guardrails.Evaluate(settings, HealthyControl, candidate).Single();

    internal static double[] Exponential(Random random, int count, double mean)
        => Enumerable.Range(0, count).Select(_ => -mean * Math.Log(1 - random.NextDouble())).ToArray();
}
