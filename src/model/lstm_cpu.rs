//! The LSTM autoencoder written by hand for the pure-Rust CPU backend,
//! scoring and training both, where burn's op-by-op execution of the
//! recurrence (with autodiff when training) was 7-12x slower than PyTorch's
//! fused kernel on the same machine.
//!
//! The arithmetic is that of [`super::lstm::LstmAe::forward`], reorganised:
//! - the batch is split into row chunks, and each chunk runs the whole
//!   recurrence on its own thread, so threads never wait on each other
//!   between steps;
//! - each step is one GEMM `[rows, H] × [H, 4H]` (the `gemm` crate, with
//!   its run-time SIMD dispatch) accumulated onto the step's input
//!   projection, then one fused pass over the four gates, 8 lanes wide
//!   where the CPU has AVX2 and FMA;
//! - the decoder's input projection is computed once per window;
//! - the head is one GEMM over every decoder state;
//! - training runs backpropagation through time by hand over a tape of the
//!   forward pass, and hands burn's Adam the gradients.
//!
//! Tests hold scoring to burn's ops and the gradients to burn's autodiff.

use rayon::prelude::*;

use super::cpu_gemm::{View, gemm_view};
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
        let h = self.hidden;
        let four_h = 4 * h;
        let mut gates = vec![0.0f32; rows * four_h];
        let mut state = vec![0.0f32; rows * h];
        let mut cell = vec![0.0f32; rows * h];

        for t in 0..window {
            self.encoder_gates(
                &mut gates,
                x,
                t,
                rows,
                window,
                (t > 0).then_some(&state[..]),
            );
            cell_step(&gates, &mut state, &mut cell, h);
        }

        let repeated = self.decoder_input(&state, rows);
        state.fill(0.0);
        cell.fill(0.0);
        let mut decoded = vec![0.0f32; rows * window * h];
        for t in 0..window {
            self.decoder_gates(&mut gates, &repeated, rows, (t > 0).then_some(&state[..]));
            cell_step(&gates, &mut state, &mut cell, h);
            for (r, row) in state.chunks_exact(h).enumerate() {
                decoded[(r * window + t) * h..][..h].copy_from_slice(row);
            }
        }
        self.head_output(out, &decoded, rows * window);
    }

    /// Encoder step `t`'s gate pre-activations `[rows, 4H]`: bias, plus the
    /// step's inputs through the input weights, plus the previous state
    /// (none at the first step) through the recurrent weights.
    fn encoder_gates(
        &self,
        gates: &mut [f32],
        x: &[f32],
        t: usize,
        rows: usize,
        window: usize,
        previous: Option<&[f32]>,
    ) {
        let (h, f) = (self.hidden, self.features);
        fill_rows(gates, &self.encoder.bias);
        gemm_view(
            gates,
            step_inputs(x, t, rows, window, f),
            View::dense(&self.encoder.input, f, 4 * h),
        );
        if let Some(previous) = previous {
            gemm_view(
                gates,
                View::dense(previous, rows, h),
                View::dense(&self.encoder.recurrent, h, 4 * h),
            );
        }
    }

    /// The decoder's input projection of the code `[rows, H]`: its input is
    /// the code at every step, so this is computed once per window.
    fn decoder_input(&self, code: &[f32], rows: usize) -> Vec<f32> {
        let h = self.hidden;
        let mut repeated = vec![0.0f32; rows * 4 * h];
        fill_rows(&mut repeated, &self.decoder.bias);
        gemm_view(
            &mut repeated,
            View::dense(code, rows, h),
            View::dense(&self.decoder.input, h, 4 * h),
        );
        repeated
    }

    /// Decoder step gate pre-activations: the repeated input projection,
    /// plus the previous state (none at the first step) through the
    /// recurrent weights.
    fn decoder_gates(
        &self,
        gates: &mut [f32],
        repeated: &[f32],
        rows: usize,
        previous: Option<&[f32]>,
    ) {
        let h = self.hidden;
        gates.copy_from_slice(repeated);
        if let Some(previous) = previous {
            gemm_view(
                gates,
                View::dense(previous, rows, h),
                View::dense(&self.decoder.recurrent, h, 4 * h),
            );
        }
    }

    /// The head over every decoder state `[rows·T, H]`, into `out`
    /// `[rows·T, F]`.
    fn head_output(&self, out: &mut [f32], decoded: &[f32], states: usize) {
        fill_rows(out, &self.head_bias);
        gemm_view(
            out,
            View::dense(decoded, states, self.hidden),
            View::dense(&self.head, self.hidden, self.features),
        );
    }
}

/// Step `t`'s inputs `[rows, F]`: every row's t-th slice of `[rows, T, F]`,
/// a strided view.
fn step_inputs(x: &[f32], t: usize, rows: usize, window: usize, f: usize) -> View<'_> {
    View {
        data: &x[t * f..],
        rows,
        cols: f,
        row_stride: window * f,
        col_stride: 1,
    }
}

/// Adds every row of `rows` (a multiple of `sum`'s length) onto `sum`: a
/// bias gradient is the sum of its output gradient over the rows.
fn sum_rows(sum: &mut [f32], rows: &[f32]) {
    for row in rows.chunks_exact(sum.len()) {
        for (total, value) in sum.iter_mut().zip(row) {
            *total += value;
        }
    }
}

/// Sets every row of `dst` to `row`.
fn fill_rows(dst: &mut [f32], row: &[f32]) {
    for chunk in dst.chunks_exact_mut(row.len()) {
        chunk.copy_from_slice(row);
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
    let shifted = madd(x, std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = madd(-n, LN_2_LOW, madd(-n, LN_2_HIGH, x));
    let mut p = 1.0 / 720.0;
    for coefficient in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = madd(p, r, coefficient);
    }
    // 2^n from the bits of `shifted` = 1.5·2^23 + n, whose mantissa holds
    // 2^22 + n: integer adds and a shift, which vectorise. `n as i32` would
    // not: Rust's saturating float-to-int cast compiles to scalar compares
    // and moves per lane, and cost the gate loop most of its time. n lies
    // in [-126, 126] after the clamp: a normal float's exponent.
    let biased_exponent = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased_exponent << 23)
}

/// Rows per chunk of a training batch. Fixed rather than derived from the
/// thread count: the chunks' gradients are summed in chunk order, so the
/// same batch gives the same bits on any machine.
const TRAIN_CHUNK_ROWS: usize = 16;

/// The gradient of every parameter, in [`LstmCpu`]'s layout.
#[derive(Debug, Clone)]
pub struct LstmGradients {
    /// Encoder `[F, 4H]`, `[4H]`, `[H, 4H]`.
    pub encoder_input: Vec<f32>,
    pub encoder_bias: Vec<f32>,
    pub encoder_recurrent: Vec<f32>,
    /// Decoder `[H, 4H]`, `[4H]`, `[H, 4H]`.
    pub decoder_input: Vec<f32>,
    pub decoder_bias: Vec<f32>,
    pub decoder_recurrent: Vec<f32>,
    /// Head `[H, F]`, `[F]`.
    pub head: Vec<f32>,
    pub head_bias: Vec<f32>,
}

impl LstmGradients {
    fn zeros(h: usize, f: usize) -> Self {
        Self {
            encoder_input: vec![0.0; f * 4 * h],
            encoder_bias: vec![0.0; 4 * h],
            encoder_recurrent: vec![0.0; h * 4 * h],
            decoder_input: vec![0.0; h * 4 * h],
            decoder_bias: vec![0.0; 4 * h],
            decoder_recurrent: vec![0.0; h * 4 * h],
            head: vec![0.0; h * f],
            head_bias: vec![0.0; f],
        }
    }

    fn parts_mut(&mut self) -> [&mut Vec<f32>; 8] {
        [
            &mut self.encoder_input,
            &mut self.encoder_bias,
            &mut self.encoder_recurrent,
            &mut self.decoder_input,
            &mut self.decoder_bias,
            &mut self.decoder_recurrent,
            &mut self.head,
            &mut self.head_bias,
        ]
    }

    fn add(&mut self, mut other: Self) {
        for (sum, part) in self.parts_mut().into_iter().zip(other.parts_mut()) {
            for (a, b) in sum.iter_mut().zip(part.iter()) {
                *a += b;
            }
        }
    }
}

/// What the forward pass keeps for the backward pass, per step: the four
/// activated gates `[rows, 4H]`, the cell `[rows, H]`, tanh of the cell and
/// the state.
struct Tape {
    gates: Vec<f32>,
    cells: Vec<f32>,
    cell_tanh: Vec<f32>,
    states: Vec<f32>,
}

impl Tape {
    /// The state before step `t` `[rows, H]`; none before the first step.
    fn previous_state(&self, t: usize, rows: usize, h: usize) -> Option<&[f32]> {
        (t > 0).then(|| &self.states[(t - 1) * rows * h..t * rows * h])
    }

    fn new(rows: usize, window: usize, h: usize) -> Self {
        Self {
            gates: vec![0.0; window * rows * 4 * h],
            cells: vec![0.0; window * rows * h],
            cell_tanh: vec![0.0; window * rows * h],
            states: vec![0.0; window * rows * h],
        }
    }
}

/// The training objective of one batch: mean squared reconstruction error,
/// plus `sparse_l1` times the mean absolute code when given.
pub struct Objective<'a> {
    /// Network input `[B, T, F]` (the clean windows, or corrupted ones for
    /// a denoising autoencoder).
    pub input: &'a [f32],
    /// Reconstruction target `[B, T, F]`.
    pub target: &'a [f32],
    pub batch: usize,
    pub window: usize,
    pub sparse_l1: Option<f64>,
}

impl Objective<'_> {
    /// A chunk's sum of squared errors against `target`, and the gradient of
    /// the batch's mean squared error with respect to `output`.
    pub fn squared_error_gradient(&self, output: &[f32], target: &[f32]) -> (f64, Vec<f32>) {
        let elements = self.input.len().max(1) as f32;
        let mut squared = 0.0f64;
        let gradient = output
            .iter()
            .zip(target)
            .map(|(o, t)| {
                let e = o - t;
                squared += f64::from(e) * f64::from(e);
                2.0 * e / elements
            })
            .collect();
        (squared, gradient)
    }
}

impl LstmCpu {
    /// The objective and its gradient with respect to every parameter, by
    /// backpropagation through time written out by hand: the same maths as
    /// burn's autodiff of [`LstmAe::forward`], held to it by a test.
    pub fn loss_and_gradients(&self, objective: &Objective<'_>) -> (f64, LstmGradients) {
        let (h, f) = (self.hidden, self.features);
        let per_window = objective.window * f;
        assert_eq!(objective.input.len(), objective.batch * per_window);
        assert_eq!(objective.target.len(), objective.batch * per_window);
        let chunk = TRAIN_CHUNK_ROWS * per_window;
        let partials: Vec<(f64, f64, LstmGradients)> = objective
            .input
            .par_chunks(chunk.max(1))
            .zip(objective.target.par_chunks(chunk.max(1)))
            .map(|(x, y)| self.chunk_gradients(x, y, x.len() / per_window.max(1), objective))
            .collect();
        let mut gradients = LstmGradients::zeros(h, f);
        let (mut squared, mut absolute_code) = (0.0, 0.0);
        for (sq, abs, partial) in partials {
            squared += sq;
            absolute_code += abs;
            gradients.add(partial);
        }
        let elements = (objective.batch * per_window).max(1) as f64;
        let mut loss = squared / elements;
        if let Some(weight) = objective.sparse_l1 {
            loss += weight * absolute_code / (objective.batch * h).max(1) as f64;
        }
        (loss, gradients)
    }

    /// One chunk's sum of squared errors, sum of |code|, and gradients
    /// (already scaled by the whole batch's sizes).
    fn chunk_gradients(
        &self,
        x: &[f32],
        y: &[f32],
        rows: usize,
        objective: &Objective<'_>,
    ) -> (f64, f64, LstmGradients) {
        let (h, f, window) = (self.hidden, self.features, objective.window);
        let four_h = 4 * h;
        let mut grads = LstmGradients::zeros(h, f);

        // Forward, keeping the tapes.
        let mut encoder = Tape::new(rows, window, h);
        let mut gates = vec![0.0f32; rows * four_h];
        for t in 0..window {
            self.encoder_gates(
                &mut gates,
                x,
                t,
                rows,
                window,
                encoder.previous_state(t, rows, h),
            );
            tape_step(&mut encoder, &gates, t, rows, h);
        }
        let code = encoder.states[(window - 1) * rows * h..].to_vec();
        let repeated = self.decoder_input(&code, rows);
        let mut decoder = Tape::new(rows, window, h);
        for t in 0..window {
            self.decoder_gates(
                &mut gates,
                &repeated,
                rows,
                decoder.previous_state(t, rows, h),
            );
            tape_step(&mut decoder, &gates, t, rows, h);
        }
        // Decoder states in window order per row, [rows·T, H], for the head.
        let mut decoded = vec![0.0f32; rows * window * h];
        for t in 0..window {
            for r in 0..rows {
                decoded[(r * window + t) * h..][..h]
                    .copy_from_slice(&decoder.states[(t * rows + r) * h..][..h]);
            }
        }
        let mut output = vec![0.0f32; rows * window * f];
        self.head_output(&mut output, &decoded, rows * window);

        let (squared, d_output) = objective.squared_error_gradient(&output, y);

        // Head.
        gemm_view(
            &mut grads.head,
            View::transposed(&decoded, rows * window, h),
            View::dense(&d_output, rows * window, f),
        );
        sum_rows(&mut grads.head_bias, &d_output);
        let mut d_decoded = vec![0.0f32; rows * window * h];
        gemm_view(
            &mut d_decoded,
            View::dense(&d_output, rows * window, f),
            View::transposed(&self.head, h, f),
        );

        // Decoder, backwards through time. Its input is the code at every
        // step, so the input projection's gradient sums over the steps.
        let mut d_state = vec![0.0f32; rows * h];
        let mut d_cell = vec![0.0f32; rows * h];
        let mut d_gates = vec![0.0f32; rows * four_h];
        let mut d_repeated = vec![0.0f32; rows * four_h];
        for t in (0..window).rev() {
            for r in 0..rows {
                for (d, g) in d_state[r * h..][..h]
                    .iter_mut()
                    .zip(&d_decoded[(r * window + t) * h..][..h])
                {
                    *d += g;
                }
            }
            tape_backward(&decoder, t, rows, h, &d_state, &mut d_cell, &mut d_gates);
            for (a, d) in d_repeated.iter_mut().zip(&d_gates) {
                *a += d;
            }
            d_state.fill(0.0);
            if let Some(previous) = decoder.previous_state(t, rows, h) {
                recurrent_backward(
                    &self.decoder.recurrent,
                    previous,
                    &d_gates,
                    &mut grads.decoder_recurrent,
                    &mut d_state,
                    (rows, h),
                );
            }
        }
        gemm_view(
            &mut grads.decoder_input,
            View::transposed(&code, rows, h),
            View::dense(&d_repeated, rows, four_h),
        );
        sum_rows(&mut grads.decoder_bias, &d_repeated);
        let mut d_code = vec![0.0f32; rows * h];
        gemm_view(
            &mut d_code,
            View::dense(&d_repeated, rows, four_h),
            View::transposed(&self.decoder.input, h, four_h),
        );
        let absolute_code: f64 = code.iter().map(|c| f64::from(c.abs())).sum();
        if let Some(weight) = objective.sparse_l1 {
            let scale = (weight / (objective.batch * h) as f64) as f32;
            for (d, c) in d_code.iter_mut().zip(&code) {
                // d|c|/dc, taking 0 at 0 as burn's abs does.
                *d += scale
                    * if *c > 0.0 {
                        1.0
                    } else if *c < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
            }
        }

        // Encoder, backwards through time from the code.
        d_state.copy_from_slice(&d_code);
        d_cell.fill(0.0);
        for t in (0..window).rev() {
            tape_backward(&encoder, t, rows, h, &d_state, &mut d_cell, &mut d_gates);
            let inputs = step_inputs(x, t, rows, window, f);
            // Its transpose `[F, rows]`: the same elements, strides swapped.
            let inputs_t = View {
                rows: f,
                cols: rows,
                row_stride: inputs.col_stride,
                col_stride: inputs.row_stride,
                ..inputs
            };
            gemm_view(
                &mut grads.encoder_input,
                inputs_t,
                View::dense(&d_gates, rows, four_h),
            );
            sum_rows(&mut grads.encoder_bias, &d_gates);
            d_state.fill(0.0);
            if let Some(previous) = encoder.previous_state(t, rows, h) {
                recurrent_backward(
                    &self.encoder.recurrent,
                    previous,
                    &d_gates,
                    &mut grads.encoder_recurrent,
                    &mut d_state,
                    (rows, h),
                );
            }
        }
        (squared, absolute_code, grads)
    }
}

/// The forward step of training: like [`cell_step`], but it keeps the
/// activated gates, the cell and tanh of the cell of step `t` on the tape.
fn tape_step(tape: &mut Tape, pre_activations: &[f32], t: usize, rows: usize, h: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above; the
        // function is safe Rust otherwise.
        unsafe { tape_step_avx2_fma(tape, pre_activations, t, rows, h) };
        return;
    }
    tape_step_generic::<false>(tape, pre_activations, t, rows, h);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tape_step_avx2_fma(tape: &mut Tape, pre_activations: &[f32], t: usize, rows: usize, h: usize) {
    tape_step_generic::<true>(tape, pre_activations, t, rows, h);
}

#[inline(always)]
fn tape_step_generic<const FMA: bool>(
    tape: &mut Tape,
    pre_activations: &[f32],
    t: usize,
    rows: usize,
    h: usize,
) {
    let four_h = 4 * h;
    let sigmoid = |x: f32| 1.0 / (1.0 + exp::<FMA>((-x).clamp(-20.0, 20.0)));
    let tanh = |x: f32| {
        let e = exp::<FMA>((-2.0 * x).clamp(-20.0, 20.0));
        (1.0 - e) / (1.0 + e)
    };
    let (before, current) = tape.cells.split_at_mut(t * rows * h);
    let current = &mut current[..rows * h];
    let zeros = vec![0.0f32; rows * h];
    let previous = if t > 0 {
        &before[(t - 1) * rows * h..]
    } else {
        &zeros[..]
    };
    let gates = &mut tape.gates[t * rows * four_h..][..rows * four_h];
    let cell_tanh = &mut tape.cell_tanh[t * rows * h..][..rows * h];
    let states = &mut tape.states[t * rows * h..][..rows * h];
    for (r, (pre, gate)) in pre_activations
        .chunks_exact(four_h)
        .zip(gates.chunks_exact_mut(four_h))
        .enumerate()
    {
        for (out, x) in gate.iter_mut().zip(pre) {
            *out = sigmoid(*x);
        }
        // The cell candidate is a tanh, not a sigmoid.
        for (out, x) in gate[2 * h..3 * h].iter_mut().zip(&pre[2 * h..3 * h]) {
            *out = tanh(*x);
        }
        let (i, rest) = gate.split_at(h);
        let (f, rest) = rest.split_at(h);
        let (g, o) = rest.split_at(h);
        let row = r * h..(r + 1) * h;
        for ((((((c, tc), s), &c_previous), &i), &f), (&g, &o)) in current[row.clone()]
            .iter_mut()
            .zip(&mut cell_tanh[row.clone()])
            .zip(&mut states[row.clone()])
            .zip(&previous[row])
            .zip(i)
            .zip(f)
            .zip(g.iter().zip(o))
        {
            *c = f * c_previous + i * g;
            *tc = tanh(*c);
            *s = o * *tc;
        }
    }
}

/// Through the recurrent projection of one step: its weights' gradient
/// gains `previousᵀ · d_gates`, and `d_state` (zeroed by the caller) becomes
/// the gradient of the previous state, `d_gates · recurrentᵀ`.
fn recurrent_backward(
    recurrent: &[f32],
    previous: &[f32],
    d_gates: &[f32],
    d_recurrent: &mut [f32],
    d_state: &mut [f32],
    (rows, h): (usize, usize),
) {
    gemm_view(
        d_recurrent,
        View::transposed(previous, rows, h),
        View::dense(d_gates, rows, 4 * h),
    );
    gemm_view(
        d_state,
        View::dense(d_gates, rows, 4 * h),
        View::transposed(recurrent, h, 4 * h),
    );
}

/// Backward through step `t`: from d(state) and the running d(cell) (the
/// later step's, updated in place to this step's predecessor), the gradient
/// of the gates' pre-activations `[rows, 4H]`.
fn tape_backward(
    tape: &Tape,
    t: usize,
    rows: usize,
    h: usize,
    d_state: &[f32],
    d_cell: &mut [f32],
    d_gates: &mut [f32],
) {
    let four_h = 4 * h;
    for r in 0..rows {
        let gate = &tape.gates[(t * rows + r) * four_h..][..four_h];
        let d_gate = &mut d_gates[r * four_h..][..four_h];
        for j in 0..h {
            let at = (t * rows + r) * h + j;
            let (i, f, g, o) = (gate[j], gate[h + j], gate[2 * h + j], gate[3 * h + j]);
            let tc = tape.cell_tanh[at];
            let ds = d_state[r * h + j];
            let dc = ds * o * (1.0 - tc * tc) + d_cell[r * h + j];
            let c_previous = if t > 0 {
                tape.cells[((t - 1) * rows + r) * h + j]
            } else {
                0.0
            };
            d_gate[j] = dc * g * i * (1.0 - i);
            d_gate[h + j] = dc * c_previous * f * (1.0 - f);
            d_gate[2 * h + j] = dc * i * (1.0 - g * g);
            d_gate[3 * h + j] = ds * tc * o * (1.0 - o);
            d_cell[r * h + j] = dc * f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernel_testing::{flat, reference_objective};
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

    /// Backpropagation through time by hand against burn's autodiff, with
    /// several features, uneven chunks and the sparse penalty.
    #[test]
    fn hand_written_gradients_match_burns_autodiff() {
        use burn::optim::GradientsParams;
        let device = Device::flex().autodiff();
        for (features, hidden, batch, window, sparse) in [
            (1, 8, 5, 7, None),
            (2, 6, 37, 5, Some(0.3)),
            (1, 16, 20, 12, None),
        ] {
            let model = LstmAeConfig::new(window, features, hidden).init(&device);
            let shape = [batch, window, features];
            let n = batch * window * features;
            let input: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1.5).collect();
            let target: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let x = Tensor::<3>::from_data(TensorData::new(input.clone(), shape), &device);
            let y = Tensor::<3>::from_data(TensorData::new(target.clone(), shape), &device);
            let loss = reference_objective(model.forward(x), y, sparse);
            let burn_loss = f64::from(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);

            let kernel = LstmCpu::from_model(&model).unwrap_or_else(|e| panic!("{e}"));
            let (our_loss, ours) = kernel.loss_and_gradients(&Objective {
                input: &input,
                target: &target,
                batch,
                window,
                sparse_l1: sparse,
            });
            assert!(
                (our_loss - burn_loss).abs() <= 1e-5 * burn_loss.abs().max(1e-3),
                "loss {our_loss} vs {burn_loss}"
            );
            let bias_id = |linear: &burn::nn::Linear| linear.bias.as_ref().map(|b| b.id);
            let expected: Vec<Compared<'_>> = vec![
                (
                    "encoder input",
                    grads.get::<2>(model.encoder.input.weight.id).map(flat),
                    &ours.encoder_input,
                ),
                (
                    "encoder bias",
                    bias_id(&model.encoder.input)
                        .and_then(|id| grads.get::<1>(id))
                        .map(flat),
                    &ours.encoder_bias,
                ),
                (
                    "encoder recurrent",
                    grads.get::<2>(model.encoder.recurrent.weight.id).map(flat),
                    &ours.encoder_recurrent,
                ),
                (
                    "decoder input",
                    grads.get::<2>(model.decoder.input.weight.id).map(flat),
                    &ours.decoder_input,
                ),
                (
                    "decoder bias",
                    bias_id(&model.decoder.input)
                        .and_then(|id| grads.get::<1>(id))
                        .map(flat),
                    &ours.decoder_bias,
                ),
                (
                    "decoder recurrent",
                    grads.get::<2>(model.decoder.recurrent.weight.id).map(flat),
                    &ours.decoder_recurrent,
                ),
                (
                    "head",
                    grads.get::<2>(model.head.weight.id).map(flat),
                    &ours.head,
                ),
                (
                    "head bias",
                    bias_id(&model.head)
                        .and_then(|id| grads.get::<1>(id))
                        .map(flat),
                    &ours.head_bias,
                ),
            ];
            for (name, burn, ours) in expected {
                let burn = burn.unwrap_or_else(|| panic!("no burn gradient for {name}"));
                assert_eq!(burn.len(), ours.len(), "{name}");
                let scale = burn.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                let worst = burn
                    .iter()
                    .zip(ours)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst <= 1e-4 * scale,
                    "F={features} H={hidden} B={batch} T={window}: {name} differs by {worst} (scale {scale})"
                );
            }
        }
    }

    /// A parameter's name, burn's gradient and ours.
    type Compared<'a> = (&'a str, Option<Vec<f32>>, &'a Vec<f32>);
}
