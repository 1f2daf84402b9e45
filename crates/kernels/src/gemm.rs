//! Dense f32 matrix products over strided views, for training and LoRA: a checked, safe face on
//! the `gemm` crate, whose AVX-512/AVX2/NEON kernels beat anything hand-written here would.
use rayon::prelude::*;

/// A read-only f32 matrix: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A writable f32 matrix with the same addressing as [`MatRef`].
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Panics unless every element of a `rows × cols` view with strides `rs, cs` lies inside `len`:
/// views are built from shapes the caller computed, so a miss is a bug, not bad input.
fn check_extent(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    if rows > 0 && cols > 0 {
        let last = (rows - 1) * rs + (cols - 1) * cs;
        assert!(
            last < len,
            "matrix view {rows}x{cols} (strides {rs},{cs}) overruns a buffer of {len}"
        );
    }
}

impl<'a> MatRef<'a> {
    /// Row-major `rows × cols`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_extent(data.len(), rows, cols, rs, cs);
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_extent(data.len(), rows, cols, rs, cs);
        MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    pub fn t(self) -> Self {
        MatMut {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            data: self.data,
        }
    }
}

/// How `sgemm` treats the destination's old content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// `c = alpha · a·b`
    Overwrite,
    /// `c += alpha · a·b`
    Add,
}

/// `c (m, n) = [c +] alpha · a (m, k) · b (k, n)`, on the process-wide thread pool when large.
pub fn sgemm(c: MatMut, a: MatRef, b: MatRef, acc: Accumulate, alpha: f32) {
    sgemm_on(c, a, b, acc, alpha, true)
}

/// [`sgemm`] on the calling thread alone, for products that are already one task among many.
pub fn sgemm_serial(c: MatMut, a: MatRef, b: MatRef, acc: Accumulate, alpha: f32) {
    sgemm_on(c, a, b, acc, alpha, false)
}

fn sgemm_on(c: MatMut, a: MatRef, b: MatRef, acc: Accumulate, alpha: f32, parallel: bool) {
    assert!(
        a.rows == c.rows && b.cols == c.cols && a.cols == b.rows,
        "sgemm shapes: c {}x{}, a {}x{}, b {}x{}",
        c.rows,
        c.cols,
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    let (m, n, k) = (c.rows, c.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if acc == Accumulate::Overwrite {
            for i in 0..m {
                for j in 0..n {
                    c.data[i * c.rs + j * c.cs] = 0.0;
                }
            }
        }
        return;
    }
    // Small products lose more to fork/join than they gain.
    let par = if parallel && m * n * k >= 1 << 18 && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every view's extent was checked against its slice at construction, `c` is borrowed
    // mutably and so aliases neither input, and the shapes agree (asserted above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            c.cs as isize,
            c.rs as isize,
            acc == Accumulate::Add,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// Row-parallel `y (n, out) [+]= x (n, in) · wᵀ` for a row-major `w (out, in)`: the shape of
/// every linear layer.
pub fn linear(y: &mut [f32], x: &[f32], w: &[f32], n: usize, acc: Accumulate, alpha: f32) {
    let inn = x.len().checked_div(n).unwrap_or(0);
    let out = w.len().checked_div(inn).unwrap_or(0);
    sgemm(
        MatMut::new(y, n, out),
        MatRef::new(x, n, inn),
        MatRef::new(w, out, inn).t(),
        acc,
        alpha,
    );
}

/// Reference product for tests: straightforward triple loop in f64.
pub fn sgemm_reference(c: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize) {
    assert!(c.len() == m * n && a.len() == m * k && b.len() == k * n);
    c.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
        for (j, o) in row.iter_mut().enumerate() {
            *o = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum::<f64>() as f32;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn products_match_the_reference_in_every_orientation() {
        let (m, k, n) = (37, 70, 29);
        let a = vals(m * k, 1);
        let b = vals(k * n, 2);
        let mut want = vec![0f32; m * n];
        sgemm_reference(&mut want, &a, &b, m, k, n);
        let mut c = vec![0f32; m * n];
        sgemm(
            MatMut::new(&mut c, m, n),
            MatRef::new(&a, m, k),
            MatRef::new(&b, k, n),
            Accumulate::Overwrite,
            1.0,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
        // Transposed operands and a transposed, accumulating destination.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut ct = vec![1f32; n * m];
        sgemm(
            MatMut::new(&mut ct, n, m).t(),
            MatRef::new(&at, k, m).t(),
            MatRef::new(&bt, n, k).t(),
            Accumulate::Add,
            2.0,
        );
        for i in 0..m {
            for j in 0..n {
                let got = ct[j * m + i];
                let w = 1.0 + 2.0 * want[i * n + j];
                assert!((got - w).abs() < 1e-3, "{got} vs {w}");
            }
        }
    }
}
