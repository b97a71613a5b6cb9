#!/usr/bin/env python3
"""Reference values for tests/TuneGateway.Tests/Statistics, computed independently of the C# code.

Standard library only. Every value is computed by a different method than the C# implementation:
exact rational or big-integer arithmetic where possible, otherwise CPython's libm (lgamma, erfc)
or a different series. Run `python3 tools/stats/reference_values.py` and compare with the
constants in the tests (each test names the section it takes its values from).
"""
from decimal import Decimal, getcontext
from fractions import Fraction
from math import comb, erfc, exp, lgamma, log, log2, pi, sqrt

getcontext().prec = 60
PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


def section(title):
    print()
    print(f"== {title}")


# --- log-gamma and erfc: CPython's libm -----------------------------------------------------------
def log_gamma():
    section("lgamma (math.lgamma)")
    for x in [0.001, 0.5, 1.0, 1.5, 2.0, 3.7, 9.99, 10.0, 25.3, 171.2, 1e5]:
        print(f"{x!r:>8}: {lgamma(x)!r}")


def erfc_values():
    section("erfc (math.erfc)")
    for x in [-2.0, -0.3, 0.0, 1e-8, 0.1, 0.5, 1.0, 2.5, 6.0, 10.0, 26.0]:
        print(f"{x!r:>6}: {erfc(x)!r}")


# --- chi-square survival by closed forms ---------------------------------------------------------
def chi2_sf(x, k):
    """P(chi2_k >= x). Even k: Poisson sum e^{-x/2} sum_{j<k/2} (x/2)^j/j!.
    Odd k: erfc(sqrt(x/2)) + e^{-x/2} sum_{j=0}^{(k-3)/2} (x/2)^{j+1/2}/Gamma(j+3/2)."""
    y = x / 2
    if k % 2 == 0:
        term, total = 1.0, 1.0
        for j in range(1, k // 2):
            term *= y / j
            total += term
        return exp(-y) * total
    total = erfc(sqrt(y))
    term = exp(-y) * sqrt(y) / (sqrt(pi) / 2)  # y^{1/2} e^{-y} / Gamma(3/2)
    a = 1.5
    while a <= k / 2:
        total += term
        term *= y / a
        a += 1
    return total


def chi_square():
    section("chi-square survival (closed forms)")
    for x, k in [(0.5, 1), (3.841458820694124, 1), (10.0, 1), (50.0, 1), (2.0, 2), (20.0, 2),
                 (7.0, 3), (100.0, 3), (15.0, 9), (40.0, 9), (0.1, 10), (30.0, 10), (250.0, 200)]:
        print(f"x={x!r}, df={k}: {chi2_sf(x, k)!r}")


# --- regularized incomplete beta for integer a, b: exact binomial tail ---------------------------
def inc_beta_exact(x, a, b):
    """I_x(a, b) = P(Binomial(a+b-1, x) >= a) for integer a, b; exact for rational x."""
    n = a + b - 1
    return sum(comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))


def log_fraction(f):
    """Natural log of a positive Fraction in 60-digit decimal arithmetic (no float underflow or
    cancellation on the way)."""
    return float((Decimal(f.numerator) / Decimal(f.denominator)).ln())


def incomplete_beta():
    section("regularized incomplete beta (exact binomial tail)")
    for x, a, b in [(Fraction(3, 10), 2, 3), (Fraction(1, 2), 5, 5), (Fraction(9, 10), 1, 7),
                    (Fraction(1, 50), 3, 40), (Fraction(7, 10), 30, 12), (Fraction(1, 100), 40, 900)]:
        value = inc_beta_exact(x, a, b)
        print(f"x={x}, a={a}, b={b}: I={float(value)!r}  lnI={log_fraction(value)!r}")


# --- Kolmogorov survival by the other theta series, in 60-digit decimals -------------------------
def kolmogorov_sf_theta(lam):
    lam = Decimal(repr(lam))
    s = sum((-(2 * k - 1) ** 2 * PI ** 2 / (8 * lam * lam)).exp() for k in range(1, 60))
    return float(1 - (2 * PI).sqrt() / lam * s)


def kolmogorov_sf_alternating(lam):
    lam = Decimal(repr(lam))
    return float(2 * sum((-1) ** (k - 1) * (-2 * k * k * lam * lam).exp() for k in range(1, 400)))


def kolmogorov():
    section("Kolmogorov survival (theta series for lambda >= 1, alternating series below; 60 digits)")
    for lam in [0.3, 0.5, 0.8, 0.99, 1.0, 1.2238, 1.3581, 1.6276, 2.0, 3.0]:
        value = kolmogorov_sf_theta(lam) if lam >= 1 else kolmogorov_sf_alternating(lam)
        print(f"{lam!r:>6}: {value!r}")


# --- two-sample KS exact p-value by big-integer path counting ------------------------------------
def ks_exact_pvalue(m, n, scaled):
    """P(max |i n - j m| >= scaled) over uniformly random lattice paths (0,0)->(m,n), by counting
    the paths that stay strictly inside with Python integers."""
    inside = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if abs(i * n - j * m) >= scaled:
                continue
            if i == 0 and j == 0:
                inside[i][j] = 1
            else:
                inside[i][j] = (inside[i - 1][j] if i else 0) + (inside[i][j - 1] if j else 0)
    return Fraction(comb(m + n, n) - inside[m][n], comb(m + n, n))


def ks():
    section("KS exact p-values (path counting; scaled statistic = m*n*D)")
    for m, n, scaled in [(5, 7, 35), (5, 7, 20), (10, 10, 50), (10, 10, 70), (8, 12, 48), (40, 60, 1200),
                         (50, 50, 1000), (100, 80, 3000), (300, 300, 9000), (300, 300, 24000),
                         (2000, 300, 60000), (2000, 300, 33000)]:
        p = ks_exact_pvalue(m, n, scaled)
        print(f"m={m}, n={n}, scaled={scaled} (D={scaled / (m * n)!r}): p={float(p)!r}")


# --- Jensen-Shannon by the entropy formula, in 60-digit decimals ---------------------------------
LN2 = Decimal(2).ln()


def entropy(p):
    return -sum(x * x.ln() / LN2 for x in p if x > 0)


def js_divergence(p, q):
    sp, sq = sum(p), sum(q)
    p = [Decimal(x) / sp for x in p]
    q = [Decimal(x) / sq for x in q]
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return entropy(m) - (entropy(p) + entropy(q)) / 2


def jensen_shannon():
    section("Jensen-Shannon divergence (bits) = H(M) - (H(P) + H(Q))/2, 60 digits")
    cases = [([1, 2, 3, 4], [4, 3, 2, 1]), ([10, 0, 5], [0, 7, 5]), ([1, 1], [1, 3]),
             ([500, 300, 200], [490, 310, 200]), ([1000000, 1, 0], [999999, 2, 0])]
    for p, q in cases:
        d = js_divergence(p, q)
        print(f"{p} vs {q}: JSD={float(d)!r} distance={float(d.sqrt())!r}")


# --- PSI from proportions, in 60-digit decimals --------------------------------------------------
def psi(expected, actual, eps=Decimal("0.0001")):
    total = Decimal(0)
    for e, a in zip(expected, actual):
        e, a = max(Decimal(e), eps), max(Decimal(a), eps)
        total += (a - e) * (a / e).ln()
    return total


def psi_values():
    section("PSI = sum (a - e) ln(a / e), proportions floored at 1e-4, 60 digits")
    for e, a in [(["0.25"] * 4, ["0.1", "0.2", "0.3", "0.4"]), (["0.5", "0.5"], ["1", "0"]),
                 (["0.5", "0.3", "0.2", "0"], ["0.4", "0.3", "0.2", "0.1"])]:
        print(f"e={e} a={a}: psi={float(psi(e, a))!r}")

    # Population PSI of N(0.5, 1) against N(0, 1) on the deciles of N(0, 1).
    from statistics import NormalDist
    edges = [NormalDist().inv_cdf(k / 10) for k in range(1, 10)]

    def proportions(mu):
        cdf = [0.0] + [NormalDist(mu, 1).cdf(x) for x in edges] + [1.0]
        return [cdf[i + 1] - cdf[i] for i in range(10)]

    e, a = proportions(0), proportions(0.5)
    print(f"N(0.5,1) vs N(0,1) on N(0,1) deciles: psi={sum((x - y) * log(x / y) for x, y in zip(a, e))!r}")


# --- MMD on a small fixed data set ---------------------------------------------------------------
MMD_X = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.5, 1.0]]
MMD_Y = [[3.0, 1.0], [2.0, 2.0], [4.0, 0.5]]


def sqdist(a, b):
    return sum((u - v) ** 2 for u, v in zip(a, b))


def mmd():
    section("MMD on MMD_X / MMD_Y (see the test), brute force")
    pooled = MMD_X + MMD_Y
    d2 = sorted(sqdist(pooled[i], pooled[j]) for i in range(len(pooled)) for j in range(i + 1, len(pooled)))
    median = d2[len(d2) // 2] if len(d2) % 2 else (d2[len(d2) // 2 - 1] + d2[len(d2) // 2]) / 2
    sigma = sqrt(median)

    def k(a, b):
        return exp(-sqdist(a, b) / (2 * sigma * sigma))

    m, n = len(MMD_X), len(MMD_Y)
    xx = sum(k(MMD_X[i], MMD_X[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(MMD_Y[i], MMD_Y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in MMD_X for b in MMD_Y) / (m * n)
    print(f"sigma={sigma!r} mmd2_u={xx + yy - 2 * xy!r}")


# --- Bernoulli mixture e-value by exact polynomial integration -----------------------------------
def bernoulli_log_evalue(s, f, p0, upper):
    """ln of  [ int_{p0}^{upper} t^s (1-t)^f dt / (upper - p0) ] / [ p0^s (1-p0)^f ]  with p0 and
    upper Fractions, integrating the expanded polynomial exactly."""
    integral = Fraction(0)
    for j in range(f + 1):
        c = comb(f, j) * (-1) ** j
        e = s + j + 1
        integral += Fraction(c, e) * (upper ** e - p0 ** e)
    ratio = integral / (upper - p0) / (p0 ** s * (1 - p0) ** f)
    return log_fraction(ratio)


def bernoulli_mixture():
    section("guardrail e-value ln M (uniform prior on (p0, min(1, 4 p0)], exact integration)")
    for s, f, p0 in [(0, 10, Fraction(1, 20)), (3, 0, Fraction(1, 50)), (5, 95, Fraction(1, 20)),
                     (12, 188, Fraction(1, 20)), (30, 270, Fraction(1, 20)), (2, 500, Fraction(1, 100)),
                     (60, 140, Fraction(3, 10)), (0, 3000, Fraction(1, 50)), (400, 1600, Fraction(1, 20))]:
        upper = min(Fraction(1), 4 * p0)
        print(f"s={s}, f={f}, p0={p0}, upper={upper}: lnM={bernoulli_log_evalue(s, f, p0, upper)!r}")


# --- SRM beta-binomial mixture likelihood ratio (math.lgamma) ------------------------------------
def srm_log_m(control, candidate, f, k):
    def log_beta(a, b):
        return lgamma(a) + lgamma(b) - lgamma(a + b)
    a, b = k * f, k * (1 - f)
    return log_beta(candidate + a, control + b) - log_beta(a, b) - candidate * log(f) - control * log(1 - f)


def srm():
    section("SRM ln M, Beta(k f, k (1 - f)) mixture (math.lgamma)")
    for control, candidate, f, k in [(18200, 1800, 0.1, 1000), (18000, 2000, 0.1, 1000), (9000, 1000, 0.1, 1000),
                                     (50, 50, 0.5, 1000), (600, 400, 0.5, 100), (0, 0, 0.3, 1000)]:
        print(f"control={control}, candidate={candidate}, f={f}, k={k}: lnM={srm_log_m(control, candidate, f, k)!r}")


if __name__ == "__main__":
    log_gamma()
    erfc_values()
    chi_square()
    incomplete_beta()
    kolmogorov()
    ks()
    jensen_shannon()
    psi_values()
    mmd()
    bernoulli_mixture()
    srm()
