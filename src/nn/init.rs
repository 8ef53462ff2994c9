//! Weight initialisation.

use rand::Rng;
use rand_distr::StandardNormal;

/// A `[rows, cols]` row-major matrix with orthonormal rows or columns (whichever are fewer),
/// scaled by `gain`, as `torch.nn.init.orthogonal_` / TF's `Orthogonal` initialiser.
pub fn orthogonal(rows: usize, cols: usize, gain: f32, rng: &mut impl Rng) -> Vec<f32> {
    // Work on a tall matrix `n × k` (n ≥ k) whose k columns are orthonormalised.
    let (n, k) = if rows >= cols { (rows, cols) } else { (cols, rows) };
    let mut a: Vec<f64> = (0..n * k).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
    // Column j lives at a[i * k + j]. Modified Gram–Schmidt, twice for accuracy.
    for j in 0..k {
        for _ in 0..2 {
            for p in 0..j {
                let dot: f64 = (0..n).map(|i| a[i * k + j] * a[i * k + p]).sum();
                for i in 0..n {
                    a[i * k + j] -= dot * a[i * k + p];
                }
            }
        }
        let norm: f64 = (0..n).map(|i| a[i * k + j].powi(2)).sum::<f64>().sqrt();
        for i in 0..n {
            a[i * k + j] /= norm;
        }
    }
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = if rows >= cols { a[r * k + c] } else { a[c * k + r] };
            out[r * cols + c] = gain * v as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn orthogonal_columns_are_orthonormal() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        for (r, c) in [(8, 3), (3, 8), (5, 5)] {
            let w = orthogonal(r, c, 1.0, &mut rng);
            let (n, k) = if r >= c { (r, c) } else { (c, r) };
            // Element i of vector j: columns when tall, rows when wide.
            let at = |w: &[f32], i: usize, j: usize| {
                if r >= c { w[i * c + j] } else { w[j * c + i] }
            };
            for p in 0..k {
                for q in 0..k {
                    let dot: f32 = (0..n).map(|i| at(&w, i, p) * at(&w, i, q)).sum();
                    let want = if p == q { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{r}x{c}: <{p},{q}> = {dot}");
                }
            }
        }
    }
}
