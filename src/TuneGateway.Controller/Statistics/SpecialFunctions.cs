namespace TuneGateway.Controller.Statistics;

/// <summary>
/// The special functions behind the p-values in this namespace: log-gamma, the regularized
/// incomplete gamma and beta functions, erfc, the normal tails and the Kolmogorov distribution.
/// All are written for relative accuracy in the tails (a p-value of 1e-12 is returned as such,
/// not as 1 - 0.999999999999), which is what threshold comparisons like p &lt; 0.001 need.
/// </summary>
/// <remarks>
/// References: Abramowitz &amp; Stegun, "Handbook of Mathematical Functions" (6.1.40 Stirling
/// series, 6.5.29 / 6.5.31 series and continued fraction of the incomplete gamma function,
/// 26.5.8 continued fraction of the incomplete beta function); Lentz's method for continued
/// fractions as modified by Thompson &amp; Barnett, "Coulomb and Bessel functions of complex
/// arguments and order" (J. Comput. Phys., 1986); Kolmogorov, "Sulla determinazione empirica di
/// una legge di distribuzione" (1933) for the limiting distribution of the KS statistic.
/// </remarks>
public static class SpecialFunctions
{
    private const double Epsilon = 1e-16;
    private const double Tiny = 1e-300;
    private const int MaxIterations = 100_000;
    private static readonly double HalfLogTwoPi = 0.5 * Math.Log(2 * Math.PI);

    /// <summary>ln Γ(x) for x &gt; 0.</summary>
    /// <remarks>
    /// The argument is shifted up to z ≥ 10 with Γ(x) = Γ(x + k) / (x (x+1) … (x+k-1)), then the
    /// Stirling series ln Γ(z) = (z - ½) ln z - z + ½ ln 2π + Σ B₂ₖ / (2k (2k-1) z^(2k-1)) is
    /// summed to the B₁₄ term; its truncation error at z = 10 is below 1e-15 relative.
    /// </remarks>
    public static double LogGamma(double x)
    {
        if (double.IsNaN(x) || x <= 0) throw new ArgumentOutOfRangeException(nameof(x), x, "LogGamma needs x > 0.");
        if (double.IsPositiveInfinity(x)) return double.PositiveInfinity;

        double shift = 0;
        if (x < 10)
        {
            double product = 1;
            while (x < 10)
            {
                product *= x;
                x += 1;
            }
            shift = Math.Log(product);
        }

        double inv = 1 / x;
        double inv2 = inv * inv;
        // Bernoulli-number coefficients B2k / (2k (2k - 1)) for k = 1..7, in Horner form in 1/z².
        double series = inv * (1.0 / 12 + inv2 * (-1.0 / 360 + inv2 * (1.0 / 1260 + inv2 * (-1.0 / 1680
            + inv2 * (1.0 / 1188 + inv2 * (-691.0 / 360360 + inv2 * (1.0 / 156)))))));
        return (x - 0.5) * Math.Log(x) - x + HalfLogTwoPi + series - shift;
    }

    /// <summary>ln B(a, b) = ln Γ(a) + ln Γ(b) - ln Γ(a + b), for a, b &gt; 0.</summary>
    public static double LogBeta(double a, double b) => LogGamma(a) + LogGamma(b) - LogGamma(a + b);

    /// <summary>The regularized lower incomplete gamma function P(a, x) = γ(a, x) / Γ(a).</summary>
    public static double RegularizedGammaP(double a, double x)
    {
        CheckGammaArguments(a, x);
        if (x == 0) return 0;
        if (double.IsPositiveInfinity(x)) return 1;
        return x < a + 1 ? GammaSeries(a, x) : 1 - GammaContinuedFraction(a, x);
    }

    /// <summary>The regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a) = 1 - P(a, x).</summary>
    public static double RegularizedGammaQ(double a, double x)
    {
        CheckGammaArguments(a, x);
        if (x == 0) return 1;
        if (double.IsPositiveInfinity(x)) return 0;
        return x < a + 1 ? 1 - GammaSeries(a, x) : GammaContinuedFraction(a, x);
    }

    /// <summary>The complementary error function erfc(x) = 1 - erf(x), via erfc(x) = Q(½, x²) for x ≥ 0.</summary>
    public static double Erfc(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        if (x < 0) return 2 - Erfc(-x);
        return RegularizedGammaQ(0.5, x * x);
    }

    /// <summary>Φ(z), the standard normal distribution function.</summary>
    public static double NormalCdf(double z) => 0.5 * Erfc(-z / Math.Sqrt(2));

    /// <summary>1 - Φ(z), the standard normal upper tail, accurate for large z.</summary>
    public static double NormalSurvival(double z) => 0.5 * Erfc(z / Math.Sqrt(2));

    /// <summary>The regularized incomplete beta function I_x(a, b), for a, b &gt; 0 and 0 ≤ x ≤ 1.</summary>
    public static double RegularizedIncompleteBeta(double x, double a, double b)
    {
        CheckBetaArguments(x, a, b);
        if (x == 0) return 0;
        if (x == 1) return 1;
        return x < (a + 1) / (a + b + 2)
            ? Math.Exp(LogBetaContinuedFractionTerm(x, a, b))
            : 1 - Math.Exp(LogBetaContinuedFractionTerm(1 - x, b, a));
    }

    /// <summary>
    /// ln I_x(a, b), accurate also when I_x(a, b) underflows a double (large a and b, x far in the
    /// lower tail), which is the case for binomial likelihoods over thousands of trials.
    /// </summary>
    public static double LogRegularizedIncompleteBeta(double x, double a, double b)
    {
        CheckBetaArguments(x, a, b);
        if (x == 0) return double.NegativeInfinity;
        if (x == 1) return 0;
        return x < (a + 1) / (a + b + 2)
            ? LogBetaContinuedFractionTerm(x, a, b)
            : Log1P(-Math.Exp(LogBetaContinuedFractionTerm(1 - x, b, a)));
    }

    /// <summary>
    /// The survival function of the Kolmogorov distribution, Q(λ) = P(K &gt; λ) where
    /// K = sup |B(t)| for a Brownian bridge B.
    /// </summary>
    /// <remarks>
    /// Q(λ) = 2 Σₖ₌₁ (-1)^(k-1) exp(-2 k² λ²) converges fast for λ ≥ 1; for λ &lt; 1 the
    /// theta-function form 1 - Q(λ) = (√(2π) / λ) Σₖ₌₁ exp(-(2k-1)² π² / (8 λ²)) is used instead.
    /// </remarks>
    public static double KolmogorovSurvival(double lambda)
    {
        if (double.IsNaN(lambda)) return double.NaN;
        if (lambda <= 0) return 1;
        if (lambda < 1)
        {
            // Below λ ≈ 0.1 every term underflows: the distribution function is 0 to double precision.
            double c = Math.PI * Math.PI / (8 * lambda * lambda);
            double sum = 0;
            for (int k = 1; k <= 20; k++)
            {
                double odd = 2 * k - 1;
                double term = Math.Exp(-odd * odd * c);
                sum += term;
                if (term < Epsilon * sum || term == 0) break;
            }
            return 1 - Math.Sqrt(2 * Math.PI) / lambda * sum;
        }

        double total = 0;
        double sign = 1;
        for (int k = 1; k <= 100; k++)
        {
            double term = Math.Exp(-2.0 * k * k * lambda * lambda);
            total += sign * term;
            if (term < Epsilon * total) break;
            sign = -sign;
        }
        return Math.Clamp(2 * total, 0, 1);
    }

    /// <summary>ln(1 + x), accurate for small |x| (Goldberg's correction of the rounded 1 + x).</summary>
    public static double Log1P(double x)
    {
        double u = 1 + x;
        if (u == 1) return x;
        if (double.IsPositiveInfinity(u)) return Math.Log(u);
        return Math.Log(u) * x / (u - 1);
    }

    /// <summary>eˣ - 1, accurate for small |x| (Kahan's correction of the rounded eˣ).</summary>
    public static double ExpM1(double x)
    {
        double u = Math.Exp(x);
        if (u == 1) return x;
        double um1 = u - 1;
        if (um1 == -1 || double.IsPositiveInfinity(u)) return um1;
        return um1 * x / Math.Log(u);
    }

    /// <summary>Series A&amp;S 6.5.29: P(a, x) = e^(-x) x^a / Γ(a) Σₙ xⁿ / (a (a+1) … (a+n)), for x &lt; a + 1.</summary>
    private static double GammaSeries(double a, double x)
    {
        double term = 1 / a;
        double sum = term;
        double ap = a;
        for (int n = 1; n < MaxIterations; n++)
        {
            ap += 1;
            term *= x / ap;
            sum += term;
            if (Math.Abs(term) < Math.Abs(sum) * Epsilon) break;
        }
        return sum * Math.Exp(-x + a * Math.Log(x) - LogGamma(a));
    }

    /// <summary>
    /// Continued fraction A&amp;S 6.5.31 for Q(a, x), x ≥ a + 1, in its even form
    /// Q = e^(-x) x^a / Γ(a) · 1 / (x + 1 - a - 1·(1-a) / (x + 3 - a - 2·(2-a) / (x + 5 - a - …))),
    /// evaluated with the modified Lentz method.
    /// </summary>
    private static double GammaContinuedFraction(double a, double x)
    {
        double b = x + 1 - a;
        double c = 1 / Tiny;
        double d = 1 / b;
        double h = d;
        for (int i = 1; i < MaxIterations; i++)
        {
            double an = -i * (i - a);
            b += 2;
            d = an * d + b;
            if (Math.Abs(d) < Tiny) d = Tiny;
            c = b + an / c;
            if (Math.Abs(c) < Tiny) c = Tiny;
            d = 1 / d;
            double delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < Epsilon) break;
        }
        return Math.Exp(-x + a * Math.Log(x) - LogGamma(a)) * h;
    }

    /// <summary>
    /// ln of x^a (1-x)^b / (a B(a, b)) · CF, with CF the continued fraction A&amp;S 26.5.8
    /// 1 / (1 + d₁ / (1 + d₂ / (1 + …))), d₂ₘ₊₁ = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)),
    /// d₂ₘ = m (b-m) x / ((a+2m-1)(a+2m)); it converges quickly for x &lt; (a+1)/(a+b+2).
    /// </summary>
    private static double LogBetaContinuedFractionTerm(double x, double a, double b)
    {
        double qab = a + b;
        double qap = a + 1;
        double qam = a - 1;
        double c = 1;
        double d = 1 - qab * x / qap;
        if (Math.Abs(d) < Tiny) d = Tiny;
        d = 1 / d;
        double h = d;
        for (int m = 1; m < MaxIterations; m++)
        {
            int m2 = 2 * m;
            double even = m * (b - m) * x / ((qam + m2) * (a + m2));
            d = 1 + even * d;
            if (Math.Abs(d) < Tiny) d = Tiny;
            c = 1 + even / c;
            if (Math.Abs(c) < Tiny) c = Tiny;
            d = 1 / d;
            h *= d * c;

            double odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
            d = 1 + odd * d;
            if (Math.Abs(d) < Tiny) d = Tiny;
            c = 1 + odd / c;
            if (Math.Abs(c) < Tiny) c = Tiny;
            d = 1 / d;
            double delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < Epsilon) break;
        }
        return a * Math.Log(x) + b * Log1P(-x) - Math.Log(a) - LogBeta(a, b) + Math.Log(h);
    }

    private static void CheckGammaArguments(double a, double x)
    {
        if (double.IsNaN(a) || a <= 0) throw new ArgumentOutOfRangeException(nameof(a), a, "The shape a must be positive.");
        if (double.IsNaN(x) || x < 0) throw new ArgumentOutOfRangeException(nameof(x), x, "x must be non-negative.");
    }

    private static void CheckBetaArguments(double x, double a, double b)
    {
        if (double.IsNaN(a) || a <= 0) throw new ArgumentOutOfRangeException(nameof(a), a, "a must be positive.");
        if (double.IsNaN(b) || b <= 0) throw new ArgumentOutOfRangeException(nameof(b), b, "b must be positive.");
        if (double.IsNaN(x) || x < 0 || x > 1) throw new ArgumentOutOfRangeException(nameof(x), x, "x must lie in [0, 1].");
    }
}
