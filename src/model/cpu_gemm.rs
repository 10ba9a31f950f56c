//! One safe wrapper around the `gemm` crate's strided GEMM, for the
//! hand-written CPU kernels.

/// A strided matrix over a slice: element (i, j) is
/// `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of the dense `[rows, cols]` matrix in `data`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// Whether every element lies inside the slice.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst[m, n] += lhs[m, k] · rhs[k, n]`, `dst` dense row-major.
pub fn gemm_view(dst: &mut [f32], lhs: View<'_>, rhs: View<'_>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    // The bounds gemm's raw pointers rely on, checked here so that the
    // unsafe call below cannot read or write outside the slices.
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert_eq!(dst.len(), m * n, "dst is not [m, n]");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "a view reaches past its slice"
    );
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: every element gemm reads or writes lies inside the slices, by
    // the assertions above: dst[i·n + j] for i < m, j < n, and each view's
    // (i, j) element for i, j within its rows and cols. dst does not alias
    // lhs or rhs (it is borrowed mutably). With read_dst, gemm computes
    // dst = 1·dst + 1·lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_view_adds_strided_and_transposed_products() {
        // lhs rows are 3 apart; only the first 2 columns are used.
        let lhs = [1.0, 2.0, 99.0, 3.0, 4.0, 99.0];
        let rhs = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let mut dst = [10.0; 6];
        let strided = View {
            data: &lhs,
            rows: 2,
            cols: 2,
            row_stride: 3,
            col_stride: 1,
        };
        gemm_view(&mut dst, strided, View::dense(&rhs, 2, 3));
        assert_eq!(dst, [11.0, 12.0, 13.0, 13.0, 14.0, 17.0]);
        // [2, 3]ᵀ · [2, 1]: the transpose of rhs times a column.
        let mut column = [0.0; 3];
        gemm_view(
            &mut column,
            View::transposed(&rhs, 2, 3),
            View::dense(&[2.0, 5.0], 2, 1),
        );
        assert_eq!(column, [2.0, 5.0, 7.0]);
    }

    #[test]
    #[should_panic(expected = "reaches past its slice")]
    fn gemm_view_refuses_a_view_past_its_slice() {
        let short = [1.0; 5];
        let mut dst = [0.0; 4];
        gemm_view(
            &mut dst,
            View::dense(&short, 2, 3),
            View::dense(&[1.0; 6], 3, 2),
        );
    }
}
