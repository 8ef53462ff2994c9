//! Small statistics helpers for the report: mean with a Student-t 95% confidence interval,
//! the t quantile itself, and Tukey box-plot statistics.
//!
//! No statistics crate is used. The two-sided 95% Student-t quantile `t_{0.975, df}` comes from
//! a table of exact values (7 significant digits) for `df = 1..=30` and from the
//! Cornish–Fisher expansion of the t quantile around the normal quantile `z = 1.959964` (terms up
//! to `1/df^4`) for `df > 30`, where its error is below `1e-5`.

/// Exact `t_{0.975, df}` for `df = 1..=30` (index `df - 1`).
const T975_TABLE: [f64; 30] = [
    12.706_204_7,
    4.302_652_7,
    3.182_446_3,
    2.776_445_1,
    2.570_581_8,
    2.446_911_9,
    2.364_624_3,
    2.306_004_1,
    2.262_157_2,
    2.228_138_9,
    2.200_985_2,
    2.178_812_8,
    2.160_368_7,
    2.144_786_7,
    2.131_449_5,
    2.119_905_3,
    2.109_815_6,
    2.100_922_0,
    2.093_024_1,
    2.085_963_4,
    2.079_613_8,
    2.073_873_1,
    2.068_657_6,
    2.063_898_6,
    2.059_538_6,
    2.055_529_4,
    2.051_830_5,
    2.048_407_1,
    2.045_229_6,
    2.042_272_5,
];

/// Standard normal 0.975 quantile.
const Z975: f64 = 1.959_963_984_540_054;

/// The 0.975 quantile of Student's t distribution with `df` degrees of freedom, i.e. the
/// multiplier of the standard error for a two-sided 95% confidence interval.
/// Returns `None` for `df == 0` (no interval can be formed from one sample).
pub fn t_quantile_975(df: usize) -> Option<f64> {
    if df == 0 {
        return None;
    }
    if df <= T975_TABLE.len() {
        return Some(T975_TABLE[df - 1]);
    }
    // Cornish–Fisher expansion (Abramowitz & Stegun 26.7.5).
    let z = Z975;
    let v = df as f64;
    let z2 = z * z;
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    Some(z + g1 / v + g2 / (v * v) + g3 / (v * v * v) + g4 / (v * v * v * v))
}

/// Mean of a sample with its sample standard deviation and 95% CI half-width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanCi {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean (NaN when `n == 0`).
    pub mean: f64,
    /// Sample standard deviation (denominator `n - 1`); `None` when `n < 2`.
    pub std: Option<f64>,
    /// Half-width of the 95% confidence interval of the mean,
    /// `t_{0.975, n-1} * std / sqrt(n)`; `None` when `n < 2`.
    pub ci95: Option<f64>,
}

/// Mean, sample standard deviation and Student-t 95% CI half-width of `xs`.
pub fn mean_ci(xs: &[f64]) -> MeanCi {
    let n = xs.len();
    if n == 0 {
        return MeanCi {
            n,
            mean: f64::NAN,
            std: None,
            ci95: None,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return MeanCi {
            n,
            mean,
            std: None,
            ci95: None,
        };
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    let std = var.sqrt();
    let ci95 = t_quantile_975(n - 1).map(|t| t * std / (n as f64).sqrt());
    MeanCi {
        n,
        mean,
        std: Some(std),
        ci95,
    }
}

/// Box-plot statistics in Tukey's convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxStats {
    pub n: usize,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    /// Smallest value `>= q1 - 1.5 * IQR`.
    pub whisker_lo: f64,
    /// Largest value `<= q3 + 1.5 * IQR`.
    pub whisker_hi: f64,
}

/// Quantile of sorted data with linear interpolation between order statistics
/// (the "type 7" definition, numpy's default).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Box-plot statistics of the finite values in `xs`; `None` if there are none.
/// Quartiles use linear interpolation; whiskers end at the most extreme data points within
/// 1.5 IQR of the box; points beyond the whiskers are outliers.
pub fn box_stats(xs: &[f64]) -> Option<BoxStats> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q1 = quantile_sorted(&v, 0.25);
    let median = quantile_sorted(&v, 0.5);
    let q3 = quantile_sorted(&v, 0.75);
    let iqr = q3 - q1;
    let lo_fence = q1 - 1.5 * iqr;
    let hi_fence = q3 + 1.5 * iqr;
    let whisker_lo = v.iter().copied().find(|&x| x >= lo_fence).unwrap_or(q1);
    let whisker_hi = v
        .iter()
        .rev()
        .copied()
        .find(|&x| x <= hi_fence)
        .unwrap_or(q3);
    Some(BoxStats {
        n: v.len(),
        q1,
        median,
        q3,
        whisker_lo,
        whisker_hi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_table_and_expansion() {
        assert_eq!(t_quantile_975(0), None);
        assert!((t_quantile_975(1).unwrap() - 12.7062).abs() < 1e-4);
        assert!((t_quantile_975(4).unwrap() - 2.7764).abs() < 1e-4);
        // Exact values computed by numerical integration of the t density.
        for (df, exact) in [
            (31, 2.039_513_4),
            (40, 2.021_075_4),
            (60, 2.000_297_8),
            (120, 1.979_930_4),
        ] {
            let t = t_quantile_975(df).unwrap();
            assert!((t - exact).abs() < 1e-5, "df {df}: {t} vs {exact}");
        }
        // Continuity at the table boundary and convergence to z.
        let (a, b) = (t_quantile_975(30).unwrap(), t_quantile_975(31).unwrap());
        assert!(b < a && a - b < 0.005);
        assert!((t_quantile_975(100_000).unwrap() - Z975).abs() < 1e-4);
    }

    #[test]
    fn mean_ci_by_hand() {
        // xs = 1,2,3,4,5: mean 3, s = sqrt(2.5), CI = 2.776445 * sqrt(2.5) / sqrt(5)
        let m = mean_ci(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m.n, 5);
        assert!((m.mean - 3.0).abs() < 1e-12);
        assert!((m.std.unwrap() - 2.5f64.sqrt()).abs() < 1e-12);
        assert!((m.ci95.unwrap() - 2.776_445_1 * (0.5f64).sqrt()).abs() < 1e-9);
        let one = mean_ci(&[7.0]);
        assert_eq!((one.mean, one.std, one.ci95), (7.0, None, None));
        assert!(mean_ci(&[]).mean.is_nan());
    }

    #[test]
    fn box_stats_tukey() {
        // 1..=9 plus an outlier 100: q1 = 3.25, median 5.5, q3 = 7.75, IQR 4.5, hi fence 14.5.
        let mut xs: Vec<f64> = (1..=9).map(f64::from).collect();
        xs.push(100.0);
        xs.push(f64::NAN);
        let b = box_stats(&xs).unwrap();
        assert_eq!(b.n, 10);
        assert!((b.q1 - 3.25).abs() < 1e-12);
        assert!((b.median - 5.5).abs() < 1e-12);
        assert!((b.q3 - 7.75).abs() < 1e-12);
        assert_eq!(b.whisker_lo, 1.0);
        assert_eq!(b.whisker_hi, 9.0);
        assert!(box_stats(&[f64::NAN]).is_none());
    }
}
