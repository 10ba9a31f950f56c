//! The LSTM autoencoder on LibTorch through its own fused LSTM op (cuDNN's
//! on a GPU), scoring and training both. burn-tch runs our recurrence op by
//! op, one kernel launch each: on an H100 that scored 11x and trained 26-33x
//! slower than PyTorch's LSTM (benches/results/h100-2026-11-27.jsonl).
//!
//! The weights are read out of the burn module on each call and handed to
//! `torch.lstm` in PyTorch's layout, which is ours transposed (gates ordered
//! input, forget, cell, output in both); the recurrent bias, which our
//! layout does not have, is zero. Training differentiates the objective with
//! LibTorch's autograd and hands burn's Adam the gradients, as the flex
//! kernel does. Tests hold both to burn's ops and to the flex kernel; CI
//! runs them on LibTorch's CPU, whose op forgives what cuDNN's does not
//! (the layout and flattening below), so a change here needs the model
//! suites run once with `ANOMALYD_TEST_DEVICE=cuda:0` on a GPU host.

use burn::prelude::*;
use tch::{Kind, Tensor as Torch};

use super::lstm::{FusedLstm, LstmAe};
use super::lstm_cpu::{LstmGradients, Objective};
use crate::error::{Error, Result};

/// The LibTorch device behind a burn device, if it is one.
// burn marks its LibTorch constructors deprecated; see device.rs.
#[allow(deprecated)]
pub fn torch_device(device: &Device) -> Option<tch::Device> {
    if *device == Device::libtorch() {
        return Some(tch::Device::Cpu);
    }
    let gpus = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
    (0..gpus)
        .find(|&index| *device == Device::libtorch_cuda(index))
        .map(tch::Device::Cuda)
}

fn torch_error(error: tch::TchError) -> Error {
    Error::Backend(format!("LibTorch's LSTM: {error}"))
}

/// A burn tensor's values as a LibTorch tensor of the same shape.
fn to_torch<const D: usize>(tensor: Tensor<D>, device: tch::Device) -> Result<Torch> {
    let shape: Vec<i64> = tensor.dims().iter().map(|&d| d as i64).collect();
    let values = tensor
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("reading an LSTM weight: {e:?}")))?;
    Torch::f_from_slice(&values)
        .and_then(|t| t.f_reshape(shape))
        .and_then(|t| t.f_to_device(device))
        .map_err(torch_error)
}

fn zeros(length: usize, device: tch::Device) -> Result<Torch> {
    Torch::f_zeros([length as i64], (Kind::Float, device)).map_err(torch_error)
}

/// A linear layer's bias, zeros where it has none.
fn bias(linear: &burn::nn::Linear, device: tch::Device) -> Result<Torch> {
    match &linear.bias {
        Some(bias) => to_torch(bias.val(), device),
        None => zeros(linear.weight.dims()[1], device),
    }
}

/// A weight, with autograd tracking it when `track` (training).
fn leaf(tensor: Torch, track: bool) -> Result<Torch> {
    tensor.f_set_requires_grad(track).map_err(torch_error)
}

fn to_values(tensor: &Torch) -> Result<Vec<f32>> {
    tensor
        .f_to_device(tch::Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_reshape([-1]))
        .and_then(|t| Vec::<f32>::try_from(&t))
        .map_err(torch_error)
}

/// cuDNN's code for an LSTM (PyTorch's `get_cudnn_mode("LSTM")`).
const CUDNN_LSTM: i64 = 2;

/// One layer's weights in PyTorch's layout (input `[4H, D]`, recurrent
/// `[4H, H]`, bias `[4H]`): the leaves gradients are taken with respect to.
struct Layer {
    input: Torch,
    recurrent: Torch,
    bias: Torch,
    zero_bias: Torch,
    /// On a GPU, the one buffer the four weights above are views into.
    /// Without it cuDNN compacts them on every call and LibTorch warns each
    /// time ("weights are not part of single contiguous chunk of memory"):
    /// 37k log lines in 110 s of `eval --kind lstm --device cuda:0`.
    _flat: Option<Torch>,
}

/// Our `[D, 4H]` weight as PyTorch's contiguous `[4H, D]`. cuDNN copies
/// weights through `view_as`, which a transposed view cannot take ("view
/// size is not compatible" on every training step on a GPU).
fn pytorch_layout(weight: Tensor<2>, device: tch::Device) -> Result<Torch> {
    to_torch(weight, device)?
        .f_tr()
        .and_then(|t| t.f_contiguous())
        .map_err(torch_error)
}

/// Our layout from a PyTorch-layout `[4H, D]` gradient.
fn burn_layout(gradient: &Torch) -> Result<Vec<f32>> {
    to_values(&gradient.f_tr().map_err(torch_error)?)
}

impl Layer {
    fn new(layer: &FusedLstm, device: tch::Device, track: bool) -> Result<Self> {
        let [input_size, gates] = layer.input.weight.dims();
        let mut weights = Self {
            input: leaf(pytorch_layout(layer.input.weight.val(), device)?, track)?,
            recurrent: leaf(pytorch_layout(layer.recurrent.weight.val(), device)?, track)?,
            bias: leaf(bias(&layer.input, device)?, track)?,
            zero_bias: zeros(gates, device)?,
            _flat: None,
        };
        if device.is_cuda() {
            // As PyTorch's `flatten_parameters`: the weights become views
            // into one buffer (an in-place change autograd must not see).
            let flat = tch::no_grad(|| {
                Torch::f_internal_cudnn_rnn_flatten_weight(
                    &[
                        &weights.input,
                        &weights.recurrent,
                        &weights.bias,
                        &weights.zero_bias,
                    ],
                    4,
                    input_size as i64,
                    CUDNN_LSTM,
                    (gates / 4) as i64,
                    0,
                    1,
                    true,
                    false,
                )
            })
            .map_err(torch_error)?;
            weights._flat = Some(flat);
        }
        Ok(weights)
    }

    /// All states `[B, T, H]` and the last one `[B, H]` of the layer run
    /// over `sequence` `[B, T, D]` from zero states.
    fn run(
        &self,
        sequence: &Torch,
        batch: i64,
        hidden: i64,
        train: bool,
    ) -> Result<(Torch, Torch)> {
        let zeros = Torch::f_zeros([1, batch, hidden], (Kind::Float, sequence.device()))
            .map_err(torch_error)?;
        let (states, last, _) = sequence
            .f_lstm(
                &[&zeros, &zeros],
                &[&self.input, &self.recurrent, &self.bias, &self.zero_bias],
                true,
                1,
                0.0,
                train,
                false,
                true,
            )
            .map_err(torch_error)?;
        Ok((states, last.f_select(0, 0).map_err(torch_error)?))
    }
}

/// The whole autoencoder's weights on one LibTorch device.
struct TorchLstmAe {
    hidden: i64,
    encoder: Layer,
    decoder: Layer,
    head: Torch,
    head_bias: Torch,
}

impl TorchLstmAe {
    fn new(model: &LstmAe, device: tch::Device, track: bool) -> Result<Self> {
        let head = to_torch(model.head.weight.val(), device)?;
        let head_bias = bias(&model.head, device)?;
        Ok(Self {
            hidden: model.head.weight.dims()[0] as i64,
            encoder: Layer::new(&model.encoder, device, track)?,
            decoder: Layer::new(&model.decoder, device, track)?,
            head: leaf(head, track)?,
            head_bias: leaf(head_bias, track)?,
        })
    }

    /// The reconstruction `[B, T, F]` of `x` and the code `[B, H]`.
    fn forward(&self, x: &Torch, shape: [usize; 3], train: bool) -> Result<(Torch, Torch)> {
        let [batch, window, _] = shape.map(|d| d as i64);
        let hidden = self.hidden;
        let (_, code) = self.encoder.run(x, batch, hidden, train)?;
        let repeated = code
            .f_unsqueeze(1)
            .and_then(|c| c.f_expand([batch, window, hidden], false))
            .map_err(torch_error)?;
        let (decoded, _) = self.decoder.run(&repeated, batch, hidden, train)?;
        let output = decoded
            .f_matmul(&self.head)
            .and_then(|o| o.f_add(&self.head_bias))
            .map_err(torch_error)?;
        Ok((output, code))
    }
}

fn batch_tensor(values: &[f32], shape: [usize; 3], device: tch::Device) -> Result<Torch> {
    let shape = shape.map(|d| d as i64);
    Torch::f_from_slice(values)
        .and_then(|t| t.f_reshape(shape))
        .and_then(|t| t.f_to_device(device))
        .map_err(torch_error)
}

/// Reconstructs `x` `[B, T, F]` (on a LibTorch device, without autodiff).
pub fn reconstruct(model: &LstmAe, x: &Tensor<3>, device: tch::Device) -> Result<Tensor<3>> {
    let dims = x.dims();
    let values = x
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("reading the windows: {e:?}")))?;
    let output = tch::no_grad(|| -> Result<Vec<f32>> {
        let weights = TorchLstmAe::new(model, device, false)?;
        let (output, _) = weights.forward(&batch_tensor(&values, dims, device)?, dims, false)?;
        to_values(&output)
    })?;
    Ok(Tensor::from_data(
        TensorData::new(output, dims),
        &x.device(),
    ))
}

/// The objective of [`Objective`] and its gradient with respect to every
/// parameter, by LibTorch's autograd through its fused LSTM.
pub fn loss_and_gradients(
    model: &LstmAe,
    objective: &Objective<'_>,
    device: tch::Device,
) -> Result<(f64, LstmGradients)> {
    let weights = TorchLstmAe::new(model, device, true)?;
    let features = model.head.weight.dims()[1];
    let shape = [objective.batch, objective.window, features];
    let input = batch_tensor(objective.input, shape, device)?;
    let target = batch_tensor(objective.target, shape, device)?;
    let (output, code) = weights.forward(&input, shape, true)?;
    let mut loss = output
        .f_mse_loss(&target, tch::Reduction::Mean)
        .map_err(torch_error)?;
    if let Some(weight) = objective.sparse_l1 {
        let penalty = code
            .f_abs()
            .and_then(|c| c.f_mean(Kind::Float))
            .and_then(|c| c.f_mul_scalar(weight))
            .map_err(torch_error)?;
        loss = loss.f_add(&penalty).map_err(torch_error)?;
    }
    loss.f_backward().map_err(torch_error)?;
    let value = loss.f_double_value(&[]).map_err(torch_error)?;
    let grad = |leaf: &Torch| leaf.f_grad().map_err(torch_error);
    let values = |leaf: &Torch| to_values(&grad(leaf)?);
    let transposed = |leaf: &Torch| burn_layout(&grad(leaf)?);
    Ok((
        value,
        LstmGradients {
            encoder_input: transposed(&weights.encoder.input)?,
            encoder_bias: values(&weights.encoder.bias)?,
            encoder_recurrent: transposed(&weights.encoder.recurrent)?,
            decoder_input: transposed(&weights.decoder.input)?,
            decoder_bias: values(&weights.decoder.bias)?,
            decoder_recurrent: transposed(&weights.decoder.recurrent)?,
            head: values(&weights.head)?,
            head_bias: values(&weights.head_bias)?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LstmAeConfig;
    use crate::model::kernel_testing::close;
    use crate::model::lstm_cpu::LstmCpu;

    #[allow(deprecated)]
    fn libtorch() -> Device {
        Device::libtorch()
    }

    /// LibTorch's fused LSTM reconstructs what burn's ops do on LibTorch,
    /// and what the flex kernel does with the same weights.
    #[test]
    fn the_fused_op_reconstructs_what_the_burn_path_does() {
        let device = libtorch();
        let torch = torch_device(&device).expect("Device::libtorch() is LibTorch's CPU");
        for (features, hidden, batch, window) in [(1, 8, 5, 7), (3, 16, 33, 12)] {
            let model = LstmAeConfig::new(window, features, hidden).init(&device);
            let shape = [batch, window, features];
            let values: Vec<f32> = (0..batch * window * features)
                .map(|i| (i as f32 * 0.37).sin() * 1.5)
                .collect();
            let x = Tensor::<3>::from_data(TensorData::new(values.clone(), shape), &device);
            let fused = reconstruct(&model, &x, torch).unwrap();
            assert_eq!(fused.dims(), shape);
            let fused = fused.into_data().try_to_vec::<f32>().unwrap();
            let burn = model
                .forward(x)
                .output
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            close("vs burn ops", &fused, &burn, 1e-5);
            let kernel = LstmCpu::from_model(&model).unwrap();
            close(
                "vs flex kernel",
                &fused,
                &kernel.reconstruct(&values, batch, window),
                1e-5,
            );
        }
    }

    /// Autograd through the fused op gives the flex kernel's gradients,
    /// which its own test holds to burn's autodiff.
    #[test]
    fn autograd_through_the_fused_op_matches_the_flex_kernels_gradients() {
        let device = libtorch();
        let torch = torch_device(&device).expect("Device::libtorch() is LibTorch's CPU");
        for (features, hidden, batch, window, sparse) in
            [(1, 8, 5, 7, None), (2, 6, 37, 5, Some(0.3))]
        {
            let model = LstmAeConfig::new(window, features, hidden).init(&device);
            let n = batch * window * features;
            let input: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1.5).collect();
            let target: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let objective = Objective {
                input: &input,
                target: &target,
                batch,
                window,
                sparse_l1: sparse,
            };
            let (loss, ours) = loss_and_gradients(&model, &objective, torch).unwrap();
            let (reference_loss, reference) = LstmCpu::from_model(&model)
                .unwrap()
                .loss_and_gradients(&objective);
            assert!(
                (loss - reference_loss).abs() <= 1e-5 * reference_loss.abs().max(1e-3),
                "loss {loss} vs {reference_loss}"
            );
            for (what, a, b) in [
                (
                    "encoder input",
                    &ours.encoder_input,
                    &reference.encoder_input,
                ),
                ("encoder bias", &ours.encoder_bias, &reference.encoder_bias),
                (
                    "encoder recurrent",
                    &ours.encoder_recurrent,
                    &reference.encoder_recurrent,
                ),
                (
                    "decoder input",
                    &ours.decoder_input,
                    &reference.decoder_input,
                ),
                ("decoder bias", &ours.decoder_bias, &reference.decoder_bias),
                (
                    "decoder recurrent",
                    &ours.decoder_recurrent,
                    &reference.decoder_recurrent,
                ),
                ("head", &ours.head, &reference.head),
                ("head bias", &ours.head_bias, &reference.head_bias),
            ] {
                close(what, a, b, 1e-4);
            }
        }
    }
}
