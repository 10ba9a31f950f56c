//! A hand-written inference path for the LSTM autoencoder on the pure-Rust
//! CPU backend, where burn's op-by-op execution of the recurrence is the
//! bottleneck (about 1.3k windows/s at T=64, H=64, against 8.5–10k for
//! PyTorch's fused kernel on the same machine).
//!
//! The arithmetic is that of [`super::lstm::LstmAe::forward`], reorganised:
//! - the batch is split into row chunks, one per thread, and each chunk runs
//!   the whole recurrence on its own, so threads never wait on each other
//!   between steps;
//! - each step is one GEMM `[rows, H] × [H, 4H]` (the `gemm` crate, with
//!   its run-time SIMD dispatch) accumulated onto the step's input
//!   projection, then one fused pass over the four gates;
//! - the decoder's input projection is computed once per window;
//! - the head is one GEMM over every decoder state.
//!
//! Training keeps the burn path (it needs autodiff); the tests hold this one
//! to it.

use rayon::prelude::*;

use super::lstm::{FusedLstm, LstmAe};
use crate::error::{Error, Result};

/// The LSTM autoencoder's weights, row-major, ready for the kernel.
#[derive(Debug, Clone)]
pub struct LstmCpu {
    hidden: usize,
    features: usize,
    encoder: CellWeights,
    decoder: CellWeights,
    /// `[H, F]`.
    head: Vec<f32>,
    /// `[F]`.
    head_bias: Vec<f32>,
}

#[derive(Debug, Clone)]
struct CellWeights {
    /// `[d_input, 4H]`, gates ordered input, forget, cell, output.
    input: Vec<f32>,
    /// `[4H]`.
    bias: Vec<f32>,
    /// `[H, 4H]`.
    recurrent: Vec<f32>,
}

/// Fewest rows worth a thread of their own: below this, splitting the
/// batch costs more in GEMM efficiency than it gains.
const MIN_ROWS_PER_CHUNK: usize = 16;

fn values(tensor: burn::tensor::Tensor<2>, what: &str) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("reading the LSTM's {what}: {e:?}")))
}

fn bias(linear: &burn::nn::Linear, what: &str) -> Result<Vec<f32>> {
    match &linear.bias {
        Some(bias) => bias
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Backend(format!("reading the LSTM's {what}: {e:?}"))),
        None => Ok(vec![0.0; linear.weight.dims()[1]]),
    }
}

impl CellWeights {
    fn from_layer(layer: &FusedLstm, name: &str) -> Result<Self> {
        Ok(Self {
            input: values(layer.input.weight.val(), &format!("{name} input weights"))?,
            bias: bias(&layer.input, &format!("{name} bias"))?,
            recurrent: values(
                layer.recurrent.weight.val(),
                &format!("{name} recurrent weights"),
            )?,
        })
    }
}

impl LstmCpu {
    /// Copies the weights out of a (flex) model.
    pub fn from_model(model: &LstmAe) -> Result<Self> {
        let [hidden, four_h] = model.encoder.recurrent.weight.dims();
        let [_, features] = model.head.weight.dims();
        debug_assert_eq!(four_h, 4 * hidden);
        Ok(Self {
            hidden,
            features,
            encoder: CellWeights::from_layer(&model.encoder, "encoder")?,
            decoder: CellWeights::from_layer(&model.decoder, "decoder")?,
            head: values(model.head.weight.val(), "head weights")?,
            head_bias: bias(&model.head, "head bias")?,
        })
    }

    /// Reconstructs `batch` windows of `window` rows (`[B, T, F]`
    /// row-major) into a buffer of the same shape.
    pub fn reconstruct(&self, input: &[f32], batch: usize, window: usize) -> Vec<f32> {
        let per_window = window * self.features;
        assert_eq!(input.len(), batch * per_window, "input is not [B, T, F]");
        let mut output = vec![0.0; input.len()];
        if batch == 0 || window == 0 {
            return output;
        }
        let threads = rayon::current_num_threads().max(1);
        let rows = batch.div_ceil(threads).max(MIN_ROWS_PER_CHUNK);
        output
            .par_chunks_mut(rows * per_window)
            .zip(input.par_chunks(rows * per_window))
            .for_each(|(out, x)| self.run_chunk(x, out, x.len() / per_window, window));
        output
    }

    fn run_chunk(&self, x: &[f32], out: &mut [f32], rows: usize, window: usize) {
        let (h, f) = (self.hidden, self.features);
        let four_h = 4 * h;
        let mut gates = vec![0.0f32; rows * four_h];
        let mut state = vec![0.0f32; rows * h];
        let mut cell = vec![0.0f32; rows * h];

        for t in 0..window {
            fill_rows(&mut gates, &self.encoder.bias);
            // This step's inputs are every row's t-th slice: a strided view.
            gemm_acc(
                &mut gates,
                Lhs {
                    data: &x[t * f..],
                    row_stride: window * f,
                },
                &self.encoder.input,
                rows,
                f,
                four_h,
            );
            if t > 0 {
                gemm_acc(
                    &mut gates,
                    Lhs::dense(&state, h),
                    &self.encoder.recurrent,
                    rows,
                    h,
                    four_h,
                );
            }
            cell_step(&gates, &mut state, &mut cell, h);
        }

        // The code is the encoder's last state; the decoder sees it at every
        // step, so its input projection is computed once.
        let mut repeated = vec![0.0f32; rows * four_h];
        fill_rows(&mut repeated, &self.decoder.bias);
        gemm_acc(
            &mut repeated,
            Lhs::dense(&state, h),
            &self.decoder.input,
            rows,
            h,
            four_h,
        );
        state.fill(0.0);
        cell.fill(0.0);
        let mut decoded = vec![0.0f32; rows * window * h];
        for t in 0..window {
            gates.copy_from_slice(&repeated);
            if t > 0 {
                gemm_acc(
                    &mut gates,
                    Lhs::dense(&state, h),
                    &self.decoder.recurrent,
                    rows,
                    h,
                    four_h,
                );
            }
            cell_step(&gates, &mut state, &mut cell, h);
            for (r, row) in state.chunks_exact(h).enumerate() {
                decoded[(r * window + t) * h..][..h].copy_from_slice(row);
            }
        }

        fill_rows(out, &self.head_bias);
        gemm_acc(
            out,
            Lhs::dense(&decoded, h),
            &self.head,
            rows * window,
            h,
            f,
        );
    }
}

/// Sets every row of `dst` to `row`.
fn fill_rows(dst: &mut [f32], row: &[f32]) {
    for chunk in dst.chunks_exact_mut(row.len()) {
        chunk.copy_from_slice(row);
    }
}

/// A row-major left operand whose rows may be `row_stride` apart.
struct Lhs<'a> {
    data: &'a [f32],
    row_stride: usize,
}

impl<'a> Lhs<'a> {
    fn dense(data: &'a [f32], width: usize) -> Self {
        Self {
            data,
            row_stride: width,
        }
    }
}

/// `dst[m, n] += lhs[m, k] · rhs[k, n]`, all row-major.
fn gemm_acc(dst: &mut [f32], lhs: Lhs<'_>, rhs: &[f32], m: usize, k: usize, n: usize) {
    // The bounds gemm's raw pointers rely on, checked here so that the
    // unsafe call below cannot read or write outside the slices.
    assert_eq!(dst.len(), m * n, "dst is not [m, n]");
    assert_eq!(rhs.len(), k * n, "rhs is not [k, n]");
    assert!(lhs.row_stride >= k, "lhs rows overlap");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        lhs.data.len() >= (m - 1) * lhs.row_stride + k,
        "lhs is shorter than [m, k] at its stride"
    );
    // SAFETY: every element gemm touches lies inside the slices, by the
    // assertions above: dst[i*n + j] for i < m, j < n; lhs[i*row_stride + p]
    // for i < m, p < k; rhs[p*n + j] for p < k, j < n. dst does not alias
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
            1,
            lhs.row_stride as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One LSTM step for every row: gates `[rows, 4H]` (input, forget, cell,
/// output) update `cell` and `state` `[rows, H]` in place. The gate
/// arithmetic is most of the kernel's time, so it runs 8 lanes wide where
/// the CPU has AVX2 (baseline x86-64 code has SSE2's 4).
fn cell_step(gates: &[f32], state: &mut [f32], cell: &mut [f32], h: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above; the
        // function is safe Rust otherwise.
        unsafe { cell_step_avx2_fma(gates, state, cell, h) };
        return;
    }
    cell_step_generic::<false>(gates, state, cell, h);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cell_step_avx2_fma(gates: &[f32], state: &mut [f32], cell: &mut [f32], h: usize) {
    // Inlined here, the same code is compiled for AVX2, with fused
    // multiply-adds in the exponential's polynomial.
    cell_step_generic::<true>(gates, state, cell, h);
}

/// `FMA` says whether `mul_add` is one instruction here; without the
/// feature it would be a libm call, so the plain form is used instead.
#[inline(always)]
fn cell_step_generic<const FMA: bool>(
    gates: &[f32],
    state: &mut [f32],
    cell: &mut [f32],
    h: usize,
) {
    for ((gate_row, state_row), cell_row) in gates
        .chunks_exact(4 * h)
        .zip(state.chunks_exact_mut(h))
        .zip(cell.chunks_exact_mut(h))
    {
        let (input, rest) = gate_row.split_at(h);
        let (forget, rest) = rest.split_at(h);
        let (candidate, output) = rest.split_at(h);
        // Zipped iterators rather than indices: no bounds checks, so the
        // loop vectorises.
        for (((((c, s), &i), &f), &g), &o) in cell_row
            .iter_mut()
            .zip(state_row.iter_mut())
            .zip(input)
            .zip(forget)
            .zip(candidate)
            .zip(output)
        {
            // c' = σ(f)·c + σ(i)·tanh(g) and s = σ(o)·tanh(c'), with
            // σ(x) = 1/(1+e^-x) and tanh(x) = (1-e^-2x)/(1+e^-2x) put over
            // common denominators: two divisions instead of five, the
            // costliest part. Clamping the exponents at ±20 keeps every
            // product finite (e^20 cubed is about 1e26) and changes no f32
            // result: σ(±20) and tanh(±10) already round to 0, 1 or ±1.
            let forget = 1.0 + exp::<FMA>((-f).clamp(-20.0, 20.0));
            let input = 1.0 + exp::<FMA>((-i).clamp(-20.0, 20.0));
            let e_g = exp::<FMA>((-2.0 * g).clamp(-20.0, 20.0));
            let candidate = 1.0 + e_g;
            let cell_next =
                (*c * input * candidate + (1.0 - e_g) * forget) / (forget * input * candidate);
            *c = cell_next;
            let output = 1.0 + exp::<FMA>((-o).clamp(-20.0, 20.0));
            let e_c = exp::<FMA>((-2.0 * cell_next).clamp(-20.0, 20.0));
            *s = (1.0 - e_c) / (output * (1.0 + e_c));
        }
    }
}

/// e^x for |x| ≤ 87, without a libm call, so that the gate loop vectorises:
/// x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-6 Taylor polynomial
/// (truncation below 2e-7), 2^n put straight into the exponent bits. ln2 is
/// split in two (Cody and Waite) so that n·ln2 is exact in f32 for the
/// first part and r keeps its precision at large |x|.
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    const LN_2_HIGH: f32 = 0.693_359_4; // 8 significant bits: n·LN_2_HIGH is exact.
    const LN_2_LOW: f32 = std::f32::consts::LN_2 - LN_2_HIGH;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer with
    // plain float adds; floor() would be a libm call on baseline x86-64
    // and stop the loop from vectorising.
    const ROUND: f32 = 12_582_912.0;
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    let x = x.clamp(-87.0, 87.0);
    let n = madd(x, std::f32::consts::LOG2_E, ROUND) - ROUND;
    let r = madd(-n, LN_2_LOW, madd(-n, LN_2_HIGH, x));
    let mut p = 1.0 / 720.0;
    for coefficient in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = madd(p, r, coefficient);
    }
    // n lies in [-126, 126] after the clamp: a normal float's exponent.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lstm::LstmAeConfig;
    use burn::prelude::*;

    /// The unsafe GEMM path against burn's own ops, on shapes that cover
    /// one row, uneven chunks, several features and long windows.
    #[test]
    fn the_kernel_reconstructs_what_the_burn_path_does() {
        let device = Device::flex();
        for (features, hidden, batch, window) in [
            (1, 8, 1, 1),
            (1, 64, 37, 16),
            (3, 16, 70, 9),
            (2, 5, 3, 33),
            (1, 32, 300, 64),
        ] {
            let model = LstmAeConfig::new(window, features, hidden).init(&device);
            let input: Vec<f32> = (0..batch * window * features)
                .map(|i| (i as f32 * 0.37).sin() * 2.0)
                .collect();
            let x = Tensor::<3>::from_data(
                TensorData::new(input.clone(), [batch, window, features]),
                &device,
            );
            let expected = model.forward(x).output.into_data().try_to_vec::<f32>();
            let expected = expected.unwrap_or_else(|e| panic!("{e:?}"));
            let kernel = LstmCpu::from_model(&model).unwrap_or_else(|e| panic!("{e}"));
            let got = kernel.reconstruct(&input, batch, window);
            assert_eq!(got.len(), expected.len());
            let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&expected)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-5 * scale,
                "F={features} H={hidden} B={batch} T={window}: worst difference {worst}"
            );
        }
    }

    #[test]
    fn exp_matches_the_standard_library_with_and_without_fma() {
        let (mut plain, mut fused) = (0.0f32, 0.0f32);
        for i in -20_000..=20_000 {
            let x = i as f32 / 1000.0;
            plain = plain.max((exp::<false>(x) - x.exp()).abs() / x.exp());
            fused = fused.max((exp::<true>(x) - x.exp()).abs() / x.exp());
        }
        assert!(plain < 1e-6, "relative error {plain}");
        assert!(fused < 1e-6, "relative error {fused}");
        assert!(exp::<false>(-1000.0) >= 0.0 && exp::<false>(1000.0).is_finite());
    }

    /// The fused gate arithmetic against the textbook cell in f64, gates
    /// from tiny to saturating, on the dispatching entry point.
    #[test]
    fn the_cell_step_is_the_lstm_cell() {
        let h = 24;
        let values = [
            -300.0, -30.0, -5.0, -1.0, -1e-4, 0.0, 1e-4, 0.7, 3.0, 12.0, 40.0, 300.0,
        ];
        let gates: Vec<f32> = (0..2 * 4 * h)
            .map(|k| values[(k * 7 + k / 5) % values.len()])
            .collect();
        let cells: Vec<f32> = (0..2 * h)
            .map(|k| values[(k * 5) % values.len()] / 10.0)
            .collect();
        let mut cell = cells.clone();
        let mut state = vec![0.0; 2 * h];
        cell_step(&gates, &mut state, &mut cell, h);
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        for row in 0..2 {
            let g = |block: usize, j: usize| f64::from(gates[row * 4 * h + block * h + j]);
            for j in 0..h {
                let c = sigmoid(g(1, j)) * f64::from(cells[row * h + j])
                    + sigmoid(g(0, j)) * g(2, j).tanh();
                let s = sigmoid(g(3, j)) * c.tanh();
                let (got_c, got_s) = (f64::from(cell[row * h + j]), f64::from(state[row * h + j]));
                assert!(
                    (got_c - c).abs() <= 1e-5 * c.abs().max(1.0),
                    "cell {row},{j}: {got_c} vs {c}"
                );
                assert!((got_s - s).abs() <= 1e-5, "state {row},{j}: {got_s} vs {s}");
            }
        }
    }

    #[test]
    fn gemm_acc_adds_a_strided_product() {
        // lhs rows are 3 apart; only the first 2 columns are used.
        let lhs = [1.0, 2.0, 99.0, 3.0, 4.0, 99.0];
        let rhs = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let mut dst = [10.0; 6];
        gemm_acc(
            &mut dst,
            Lhs {
                data: &lhs,
                row_stride: 3,
            },
            &rhs,
            2,
            2,
            3,
        );
        assert_eq!(dst, [11.0, 12.0, 13.0, 13.0, 14.0, 17.0]);
    }
}
