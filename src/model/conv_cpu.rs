//! The convolutional autoencoder written by hand for the pure-Rust CPU
//! backend, scoring and training both: burn-flex builds a convolution's
//! im2col element by element and runs each op on one thread, which kept a
//! conv training step at 0.7-1x PyTorch's.
//!
//! Activations stay channels last (`[rows, L, C]`, the windows' own layout),
//! so every tap of a layer is a contiguous run of C values:
//! - a strided convolution gathers its K taps side by side (im2col) and is
//!   one GEMM `[rows·L_out, K·C_in] × [K·C_in, C_out]`;
//! - a transposed convolution is one GEMM `[rows·L_in, C_in] × [C_in,
//!   K·C_out]` whose K column blocks are added onto the output rows they
//!   land on (col2im);
//! - the backward passes are the same two moves the other way round.
//!
//! Rows are cut into fixed chunks, one per task on rayon's pool; gradients
//! are summed in chunk order, so a seed gives the same bits on any machine.
//! Tests hold scoring to burn's ops and the gradients to burn's autodiff.

use burn::nn::PaddingConfig1d;
use burn::nn::conv::{Conv1d, ConvTranspose1d};
use rayon::prelude::*;

use super::ConvAe;
use super::cpu_gemm::{View, gemm_view};
use super::lstm_cpu::Objective;
use crate::error::{Error, Result};

/// Rows per chunk, for scoring and training alike.
const CHUNK_ROWS: usize = 16;

/// Which way a layer maps the time axis.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Direction {
    /// A strided convolution: `L_in` → the shorter `L_out`.
    Down,
    /// A strided transposed convolution: `L_in` → the longer `L_out`.
    Up,
}

/// One layer, with its weight laid out for its GEMM: `Down` `[K·C_in,
/// C_out]` (row j·C_in + ci), `Up` `[C_in, K·C_out]` (column j·C_out + co).
#[derive(Debug, Clone)]
struct Layer {
    direction: Direction,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    l_in: usize,
    l_out: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// The four layers' weights, ready for the kernel.
#[derive(Debug, Clone)]
pub struct ConvCpu {
    layers: [Layer; 4],
}

/// Each layer's weight and bias gradients, in burn's layouts (`Conv1d`
/// `[C_out, C_in, K]`, `ConvTranspose1d` `[C_in, C_out, K]`).
#[derive(Debug, Clone)]
pub struct ConvGradients {
    pub weights: [Vec<f32>; 4],
    pub biases: [Vec<f32>; 4],
}

fn values<const D: usize>(tensor: burn::tensor::Tensor<D>, what: &str) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("reading the conv's {what}: {e:?}")))
}

fn bias_values(
    bias: Option<&burn::module::Param<burn::tensor::Tensor<1>>>,
    len: usize,
) -> Result<Vec<f32>> {
    match bias {
        Some(bias) => values(bias.val(), "bias"),
        None => Ok(vec![0.0; len]),
    }
}

impl Layer {
    fn down(conv: &Conv1d, l_in: usize) -> Result<Self> {
        let unsupported =
            || Error::Backend("a conv layer shape the CPU kernel does not cover".into());
        let PaddingConfig1d::Explicit(left, right) = conv.padding else {
            return Err(unsupported());
        };
        let [c_out, c_in, kernel] = conv.weight.dims();
        let stride = conv.stride;
        if conv.dilation != 1 || conv.groups != 1 || stride == 0 || l_in + left + right < kernel {
            return Err(unsupported());
        }
        let weight = gemm_weight(conv.weight.val(), Direction::Down, c_in, c_out, kernel)?;
        Ok(Self {
            direction: Direction::Down,
            c_in,
            c_out,
            kernel,
            stride,
            padding: left,
            l_in,
            l_out: (l_in + left + right - kernel) / stride + 1,
            weight,
            bias: bias_values(conv.bias.as_ref(), c_out)?,
        })
    }

    fn up(conv: &ConvTranspose1d, l_in: usize) -> Result<Self> {
        let [c_in, c_out, kernel] = conv.weight.dims();
        let (stride, padding) = (conv.stride, conv.padding);
        let l_out =
            (l_in.saturating_sub(1) * stride + kernel + conv.padding_out).checked_sub(2 * padding);
        let (true, Some(l_out)) = (conv.dilation == 1 && conv.groups == 1 && stride > 0, l_out)
        else {
            return Err(Error::Backend(
                "a transposed conv shape the CPU kernel does not cover".into(),
            ));
        };
        let weight = gemm_weight(conv.weight.val(), Direction::Up, c_in, c_out, kernel)?;
        Ok(Self {
            direction: Direction::Up,
            c_in,
            c_out,
            kernel,
            stride,
            padding,
            l_in,
            l_out,
            weight,
            bias: bias_values(conv.bias.as_ref(), c_out)?,
        })
    }

    /// (short, long) lengths and the channels on the long side and per tap:
    /// taps live on the short side, K blocks of the long side's channels.
    fn sides(&self) -> (usize, usize, usize) {
        match self.direction {
            Direction::Down => (self.l_out, self.l_in, self.c_in),
            Direction::Up => (self.l_in, self.l_out, self.c_out),
        }
    }

    /// Calls `visit(short_row, j, long_row)` for every tap j of every short
    /// position whose long position s·t + j − padding lies inside.
    fn for_each_tap(&self, rows: usize, mut visit: impl FnMut(usize, usize, usize)) {
        let (short, long, _) = self.sides();
        for b in 0..rows {
            for t in 0..short {
                for j in 0..self.kernel {
                    let Some(u) = (self.stride * t + j).checked_sub(self.padding) else {
                        continue;
                    };
                    if u < long {
                        visit(b * short + t, j, b * long + u);
                    }
                }
            }
        }
    }

    /// Long-side rows copied into their taps: `[rows·short, K·C]`.
    fn gather(&self, long_side: &[f32], rows: usize) -> Vec<f32> {
        let (short, _, c) = self.sides();
        let k = self.kernel;
        let mut taps = vec![0.0; rows * short * k * c];
        self.for_each_tap(rows, |s, j, l| {
            taps[(s * k + j) * c..][..c].copy_from_slice(&long_side[l * c..][..c]);
        });
        taps
    }

    /// Taps added onto the long-side rows they land on.
    fn scatter_add(&self, taps: &[f32], long_side: &mut [f32], rows: usize) {
        let (_, _, c) = self.sides();
        let k = self.kernel;
        self.for_each_tap(rows, |s, j, l| {
            for (dst, src) in long_side[l * c..][..c]
                .iter_mut()
                .zip(&taps[(s * k + j) * c..][..c])
            {
                *dst += src;
            }
        });
    }

    /// The layer's output `[rows, L_out, C_out]`, and for a `Down` layer
    /// its im2col matrix, which the backward pass reuses.
    fn forward(&self, x: &[f32], rows: usize) -> (Vec<f32>, Vec<f32>) {
        let (k, c_in, c_out) = (self.kernel, self.c_in, self.c_out);
        let mut out = vec![0.0; rows * self.l_out * c_out];
        for row in out.chunks_exact_mut(c_out) {
            row.copy_from_slice(&self.bias);
        }
        match self.direction {
            Direction::Down => {
                let columns = self.gather(x, rows);
                gemm_view(
                    &mut out,
                    View::dense(&columns, rows * self.l_out, k * c_in),
                    View::dense(&self.weight, k * c_in, c_out),
                );
                (out, columns)
            }
            Direction::Up => {
                let mut taps = vec![0.0; rows * self.l_in * k * c_out];
                gemm_view(
                    &mut taps,
                    View::dense(x, rows * self.l_in, c_in),
                    View::dense(&self.weight, c_in, k * c_out),
                );
                self.scatter_add(&taps, &mut out, rows);
                (out, Vec::new())
            }
        }
    }

    /// Adds this layer's weight and bias gradients (GEMM layout) for the
    /// output gradient `d_out`, and returns the input gradient when asked.
    fn backward(
        &self,
        x: &[f32],
        columns: &[f32],
        d_out: &[f32],
        rows: usize,
        grads: (&mut [f32], &mut [f32]),
        want_input: bool,
    ) -> Option<Vec<f32>> {
        let (k, c_in, c_out) = (self.kernel, self.c_in, self.c_out);
        let (d_weight, d_bias) = grads;
        for row in d_out.chunks_exact(c_out) {
            for (total, value) in d_bias.iter_mut().zip(row) {
                *total += value;
            }
        }
        match self.direction {
            Direction::Down => {
                let m = rows * self.l_out;
                gemm_view(
                    d_weight,
                    View::transposed(columns, m, k * c_in),
                    View::dense(d_out, m, c_out),
                );
                want_input.then(|| {
                    let mut d_columns = vec![0.0; m * k * c_in];
                    gemm_view(
                        &mut d_columns,
                        View::dense(d_out, m, c_out),
                        View::transposed(&self.weight, k * c_in, c_out),
                    );
                    let mut d_x = vec![0.0; rows * self.l_in * c_in];
                    self.scatter_add(&d_columns, &mut d_x, rows);
                    d_x
                })
            }
            Direction::Up => {
                let m = rows * self.l_in;
                let d_taps = self.gather(d_out, rows);
                gemm_view(
                    d_weight,
                    View::transposed(x, m, c_in),
                    View::dense(&d_taps, m, k * c_out),
                );
                want_input.then(|| {
                    let mut d_x = vec![0.0; m * c_in];
                    gemm_view(
                        &mut d_x,
                        View::dense(&d_taps, m, k * c_out),
                        View::transposed(&self.weight, c_in, k * c_out),
                    );
                    d_x
                })
            }
        }
    }

    /// A GEMM-layout weight gradient in burn's layout.
    fn to_burn_layout(&self, gemm: &[f32]) -> Vec<f32> {
        let mut burn = vec![0.0; gemm.len()];
        for (gemm_at, burn_at) in weight_layouts(self.direction, self.c_in, self.c_out, self.kernel)
        {
            burn[burn_at] = gemm[gemm_at];
        }
        burn
    }
}

/// A layer's burn weight in its GEMM layout.
fn gemm_weight(
    tensor: burn::tensor::Tensor<3>,
    direction: Direction,
    c_in: usize,
    c_out: usize,
    kernel: usize,
) -> Result<Vec<f32>> {
    let burn = values(tensor, "weights")?;
    let mut gemm = vec![0.0; burn.len()];
    for (gemm_at, burn_at) in weight_layouts(direction, c_in, c_out, kernel) {
        gemm[gemm_at] = burn[burn_at];
    }
    Ok(gemm)
}

/// Where each weight lies in the GEMM layout and in burn's, as
/// `(gemm, burn)` index pairs. `Down`: burn `[C_out, C_in, K]`, GEMM
/// `[K·C_in, C_out]`. `Up`: burn `[C_in, C_out, K]`, GEMM `[C_in, K·C_out]`.
fn weight_layouts(
    direction: Direction,
    c_in: usize,
    c_out: usize,
    kernel: usize,
) -> impl Iterator<Item = (usize, usize)> {
    (0..c_in).flat_map(move |ci| {
        (0..c_out).flat_map(move |co| {
            (0..kernel).map(move |j| match direction {
                Direction::Down => ((j * c_in + ci) * c_out + co, (co * c_in + ci) * kernel + j),
                Direction::Up => (
                    ci * kernel * c_out + j * c_out + co,
                    (ci * c_out + co) * kernel + j,
                ),
            })
        })
    })
}

fn relu(values: &mut [f32]) {
    for v in values {
        *v = v.max(0.0);
    }
}

/// Zeroes the gradient where the ReLU's output was zero.
fn relu_backward(gradient: &mut [f32], output: &[f32]) {
    for (g, &o) in gradient.iter_mut().zip(output) {
        if o <= 0.0 {
            *g = 0.0;
        }
    }
}

/// One chunk's forward pass, every activation kept.
struct Pass {
    /// Input of each layer (after the ReLU where there is one), then the
    /// output: `activations[i]` is layer i's input.
    activations: [Vec<f32>; 5],
    /// The down layers' im2col matrices.
    columns: [Vec<f32>; 2],
}

impl ConvCpu {
    /// Copies the weights out of a model for windows of `window` rows.
    pub fn from_model(model: &ConvAe, window: usize) -> Result<Self> {
        let down1 = Layer::down(&model.down1, window)?;
        let down2 = Layer::down(&model.down2, down1.l_out)?;
        let up1 = Layer::up(&model.up1, down2.l_out)?;
        let up2 = Layer::up(&model.up2, up1.l_out)?;
        if up2.l_out != window {
            return Err(Error::Backend(
                "the conv's output length is not the window's".into(),
            ));
        }
        Ok(Self {
            layers: [down1, down2, up1, up2],
        })
    }

    fn per_window(&self) -> usize {
        self.layers[0].l_in * self.layers[0].c_in
    }

    fn pass(&self, x: &[f32], rows: usize) -> Pass {
        let [down1, down2, up1, up2] = &self.layers;
        let (mut hidden, columns1) = down1.forward(x, rows);
        relu(&mut hidden);
        let (code, columns2) = down2.forward(&hidden, rows);
        let (mut widened, _) = up1.forward(&code, rows);
        relu(&mut widened);
        let (output, _) = up2.forward(&widened, rows);
        Pass {
            activations: [x.to_vec(), hidden, code, widened, output],
            columns: [columns1, columns2],
        }
    }

    /// Reconstructs `batch` windows (`[B, T, F]` row-major).
    pub fn reconstruct(&self, input: &[f32], batch: usize) -> Vec<f32> {
        let per_window = self.per_window();
        assert_eq!(input.len(), batch * per_window, "input is not [B, T, F]");
        let mut output = vec![0.0; input.len()];
        output
            .par_chunks_mut(CHUNK_ROWS * per_window.max(1))
            .zip(input.par_chunks(CHUNK_ROWS * per_window.max(1)))
            .for_each(|(out, x)| {
                let rows = x.len() / per_window;
                let [_, _, _, _, reconstructed] = self.pass(x, rows).activations;
                out.copy_from_slice(&reconstructed);
            });
        output
    }

    /// The objective and its gradient with respect to every parameter:
    /// the same maths as burn's autodiff of [`ConvAe::forward`].
    pub fn loss_and_gradients(&self, objective: &Objective<'_>) -> (f64, ConvGradients) {
        let per_window = self.per_window();
        assert_eq!(objective.input.len(), objective.batch * per_window);
        assert_eq!(objective.target.len(), objective.batch * per_window);
        let chunk = CHUNK_ROWS * per_window.max(1);
        let partials: Vec<Partial> = objective
            .input
            .par_chunks(chunk)
            .zip(objective.target.par_chunks(chunk))
            .map(|(x, y)| self.chunk_gradients(x, y, x.len() / per_window, objective))
            .collect();
        let mut weights: [Vec<f32>; 4] = self.layers.each_ref().map(|l| vec![0.0; l.weight.len()]);
        let mut biases: [Vec<f32>; 4] = self.layers.each_ref().map(|l| vec![0.0; l.bias.len()]);
        let (mut squared, mut absolute_code) = (0.0, 0.0);
        for part in partials {
            squared += part.squared;
            absolute_code += part.absolute_code;
            let pairs = weights.iter_mut().zip(&part.weights);
            for (total, part) in pairs.chain(biases.iter_mut().zip(&part.biases)) {
                for (t, p) in total.iter_mut().zip(part) {
                    *t += p;
                }
            }
        }
        let mut loss = squared / (objective.batch * per_window).max(1) as f64;
        if let Some(weight) = objective.sparse_l1 {
            loss += weight * absolute_code / self.code_elements(objective.batch).max(1) as f64;
        }
        let weights = [0, 1, 2, 3].map(|i| self.layers[i].to_burn_layout(&weights[i]));
        (loss, ConvGradients { weights, biases })
    }

    fn code_elements(&self, batch: usize) -> usize {
        batch * self.layers[1].l_out * self.layers[1].c_out
    }

    /// One chunk's sum of squared errors, sum of |code|, and GEMM-layout
    /// gradients (already scaled by the whole batch's sizes).
    fn chunk_gradients(
        &self,
        x: &[f32],
        y: &[f32],
        rows: usize,
        objective: &Objective<'_>,
    ) -> Partial {
        let pass = self.pass(x, rows);
        let [input, hidden, code, widened, output] = &pass.activations;
        let (squared, d_output) = objective.squared_error_gradient(output, y);
        let mut weights: [Vec<f32>; 4] = self.layers.each_ref().map(|l| vec![0.0; l.weight.len()]);
        let mut biases: [Vec<f32>; 4] = self.layers.each_ref().map(|l| vec![0.0; l.bias.len()]);
        let [down1, down2, up1, up2] = &self.layers;
        let [w1, w2, w3, w4] = &mut weights;
        let [b1, b2, b3, b4] = &mut biases;

        let mut d_widened = up2
            .backward(widened, &[], &d_output, rows, (w4, b4), true)
            .unwrap_or_default();
        relu_backward(&mut d_widened, widened);
        let mut d_code = up1
            .backward(code, &[], &d_widened, rows, (w3, b3), true)
            .unwrap_or_default();
        let absolute_code: f64 = code.iter().map(|&c| f64::from(c.abs())).sum();
        if let Some(weight) = objective.sparse_l1 {
            let scale = (weight / self.code_elements(objective.batch).max(1) as f64) as f32;
            for (d, &c) in d_code.iter_mut().zip(code) {
                *d += scale * sign(c);
            }
        }
        let mut d_hidden = down2
            .backward(hidden, &pass.columns[1], &d_code, rows, (w2, b2), true)
            .unwrap_or_default();
        relu_backward(&mut d_hidden, hidden);
        down1.backward(input, &pass.columns[0], &d_hidden, rows, (w1, b1), false);
        Partial {
            squared,
            absolute_code,
            weights,
            biases,
        }
    }
}

/// One chunk's share of the objective and its gradients (GEMM layout).
struct Partial {
    squared: f64,
    absolute_code: f64,
    weights: [Vec<f32>; 4],
    biases: [Vec<f32>; 4],
}

/// d|x|/dx as burn's autodiff takes it: 0 at 0.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    use super::*;
    use crate::model::ConvAeConfig;
    use crate::model::kernel_testing::{close, flat, reference_objective};

    /// Shapes that cover odd windows (output padding), several features,
    /// wider kernels, and a batch that leaves a short last chunk.
    fn shapes() -> [(usize, usize, usize, usize, usize, usize); 3] {
        // (window, features, channels, code channels, kernel, batch)
        [
            (16, 1, 8, 2, 5, 5),
            (13, 2, 6, 3, 3, 37),
            (21, 3, 4, 4, 7, 20),
        ]
    }

    fn model(
        (window, features, channels, code, kernel, _): (usize, usize, usize, usize, usize, usize),
        device: &Device,
    ) -> ConvAe {
        ConvAeConfig::new(window, features)
            .with_channels(channels)
            .with_code_channels(code)
            .with_kernel(kernel)
            .init(device)
    }

    fn kernel_of(model: &ConvAe, window: usize) -> ConvCpu {
        ConvCpu::from_model(model, window).unwrap_or_else(|e| panic!("{e}"))
    }

    fn windows(n: usize, phase: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37 + phase).sin() * 1.5)
            .collect()
    }

    #[test]
    fn the_kernel_reconstructs_what_the_burn_path_does() {
        let device = Device::flex();
        for case in shapes() {
            let (window, features, _, _, _, batch) = case;
            let model = model(case, &device);
            let shape = [batch, window, features];
            let input = windows(batch * window * features, 0.0);
            let x = Tensor::<3>::from_data(TensorData::new(input.clone(), shape), &device);
            let burn = flat(model.forward(x).output);
            let ours = kernel_of(&model, window).reconstruct(&input, batch);
            close(&format!("{shape:?}"), &ours, &burn, 1e-5);
        }
    }

    #[test]
    fn hand_written_gradients_match_burns_autodiff() {
        let device = Device::flex().autodiff();
        for (case, sparse) in shapes().into_iter().zip([None, Some(0.3), Some(0.05)]) {
            let (window, features, _, _, _, batch) = case;
            let model = model(case, &device);
            let shape = [batch, window, features];
            let n = batch * window * features;
            let input = windows(n, 0.0);
            let target = windows(n, 0.4);
            let x = Tensor::<3>::from_data(TensorData::new(input.clone(), shape), &device);
            let y = Tensor::<3>::from_data(TensorData::new(target.clone(), shape), &device);
            let loss = reference_objective(model.forward(x), y, sparse);
            let burn_loss = f64::from(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let (our_loss, ours) = kernel_of(&model, window).loss_and_gradients(&Objective {
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
            let layers = [
                (&model.down1.weight, &model.down1.bias),
                (&model.down2.weight, &model.down2.bias),
                (&model.up1.weight, &model.up1.bias),
                (&model.up2.weight, &model.up2.bias),
            ];
            for (i, (weight, bias)) in layers.into_iter().enumerate() {
                let expected = flat(grads.get::<3>(weight.id).unwrap());
                close(
                    &format!("{shape:?} weight {i}"),
                    &ours.weights[i],
                    &expected,
                    1e-4,
                );
                let bias = bias.as_ref().unwrap();
                let expected = flat(grads.get::<1>(bias.id).unwrap());
                close(
                    &format!("{shape:?} bias {i}"),
                    &ours.biases[i],
                    &expected,
                    1e-4,
                );
            }
        }
    }
}
