/**
 * The statistics of seed repeats: mean and sample standard deviation, and Welch's t-test (two
 * means, unequal variances) with Student's t distribution for fractional degrees of freedom,
 * through the regularized incomplete beta function. Pure: no I/O.
 */

export function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** The sample standard deviation (n - 1 in the denominator); null for fewer than 2 values. */
export function sd(values: number[]): number | null {
  if (values.length < 2) return null;
  const m = mean(values);
  return Math.sqrt(values.reduce((sum, value) => sum + (value - m) ** 2, 0) / (values.length - 1));
}

export interface WelchResult {
  /** (mean a - mean b) / its standard error; ±Infinity when neither sample varies */
  t: number;
  /** the Welch–Satterthwaite degrees of freedom (null when neither sample varies) */
  df: number | null;
  /** two-sided p-value */
  p: number;
  /** |t| above this is significant at the level asked (null when neither sample varies) */
  critical: number | null;
  significant: boolean;
}

/**
 * Welch's t-test of mean(a) = mean(b), two-sided at `level` (0.95: 5% false alarms). Each sample
 * needs 2 values or more. When neither varies (every repeat gave the same value), any difference
 * of the means is beyond the noise they show, and none is not.
 */
export function welch(a: number[], b: number[], level = 0.95): WelchResult {
  if (a.length < 2 || b.length < 2) throw new Error("Welch's t-test needs 2 values or more in each sample");
  const [va, vb] = [sd(a)! ** 2 / a.length, sd(b)! ** 2 / b.length];
  const difference = mean(a) - mean(b);
  if (va + vb === 0) {
    const t = difference === 0 ? 0 : difference * Infinity;
    return { t, df: null, p: difference === 0 ? 1 : 0, critical: null, significant: difference !== 0 };
  }
  const t = difference / Math.sqrt(va + vb);
  const df = (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  const p = twoSidedP(t, df);
  return { t, df, p, critical: tQuantile(1 - (1 - level) / 2, df), significant: p < 1 - level };
}

/** P(|T| >= |t|) for Student's t with `df` (any real df > 0) degrees of freedom. */
export function twoSidedP(t: number, df: number): number {
  return incompleteBeta(df / (df + t * t), df / 2, 0.5);
}

/** The q-quantile (0.5 <= q < 1) of Student's t with `df` degrees of freedom, df real > 0. */
export function tQuantile(q: number, df: number): number {
  // P(|T| >= t) = 2 (1 - q) = I_x(df/2, 1/2) with x = df / (df + t²); I_x rises with x: bisect on x.
  const target = 2 * (1 - q);
  let [low, high] = [0, 1];
  for (let i = 0; i < 200 && high - low > 1e-17; i++) {
    const x = (low + high) / 2;
    if (incompleteBeta(x, df / 2, 0.5) < target) low = x;
    else high = x;
  }
  const x = (low + high) / 2;
  return Math.sqrt(df * (1 - x) / x);
}

/** The regularized incomplete beta function I_x(a, b) (Numerical Recipes' continued fraction). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  // The fraction converges fast for x below the mean of the distribution; above, by symmetry.
  return x < (a + 1) / (a + b + 2) ? front * betaFraction(x, a, b) / a : 1 - front * betaFraction(1 - x, b, a) / b;
}

/** The continued fraction of the incomplete beta function, by the modified Lentz method. */
function betaFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - (a + b) * x / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    for (
      const term of [
        m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
        -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)),
      ]
    ) {
      d = 1 + term * d;
      if (Math.abs(d) < tiny) d = tiny;
      c = 1 + term / c;
      if (Math.abs(c) < tiny) c = tiny;
      d = 1 / d;
      h *= d * c;
    }
    if (Math.abs(d * c - 1) < 1e-15) break;
  }
  return h;
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits). */
function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const coefficients = [
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
  ];
  const z = x - 1;
  let sum = coefficients[0];
  for (let i = 1; i < 9; i++) sum += coefficients[i] / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}
