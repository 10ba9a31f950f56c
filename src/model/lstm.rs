//! The LSTM autoencoder: an LSTM encoder whose last hidden state is the code,
//! repeated over the window as the input of an LSTM decoder, and a linear
//! head back to the features.
//!
//! The LSTM is written fused (PyTorch's layout): one input projection to all
//! four gates for the whole sequence, one recurrent projection per step, and
//! the decoder's input projection computed once, since its input is the same
//! code at every step.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, tanh};

use super::Reconstruction;

#[derive(Config, Debug, PartialEq)]
pub struct LstmAeConfig {
    pub window: usize,
    pub features: usize,
    /// Hidden size of both LSTMs; also the code size.
    pub hidden: usize,
}

/// One LSTM layer with fused gates, ordered input, forget, cell, output.
#[derive(Module, Debug)]
pub struct FusedLstm {
    /// `d_input → 4H`, with the gate biases.
    pub input: Linear,
    /// `H → 4H`, no bias (the input projection carries it).
    pub recurrent: Linear,
    hidden: usize,
}

impl FusedLstm {
    pub fn new(d_input: usize, hidden: usize, device: &Device) -> Self {
        Self {
            input: LinearConfig::new(d_input, 4 * hidden).init(device),
            recurrent: LinearConfig::new(hidden, 4 * hidden)
                .with_bias(false)
                .init(device),
            hidden,
        }
    }

    /// Runs `steps` steps. `projected_input(t)` is step t's input already
    /// through `self.input`, `[B, 4H]`. Returns every hidden state `[B, H]`.
    fn run(
        &self,
        batch: usize,
        steps: usize,
        device: &Device,
        projected_input: impl Fn(usize) -> Tensor<2>,
    ) -> Vec<Tensor<2>> {
        let mut hidden = Tensor::<2>::zeros([batch, self.hidden], device);
        let mut cell = Tensor::<2>::zeros([batch, self.hidden], device);
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let gates = projected_input(t) + self.recurrent.forward(hidden);
            let mut parts = gates.chunk(4, 1).into_iter();
            let (Some(i), Some(f), Some(g), Some(o)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                unreachable!("chunk(4) of a 4H-wide tensor yields four parts");
            };
            cell = sigmoid(f) * cell + sigmoid(i) * tanh(g);
            hidden = sigmoid(o) * tanh(cell.clone());
            outputs.push(hidden.clone());
        }
        outputs
    }
}

#[derive(Module, Debug)]
pub struct LstmAe {
    pub encoder: FusedLstm,
    pub decoder: FusedLstm,
    pub head: Linear,
}

impl LstmAeConfig {
    pub fn init(&self, device: &Device) -> LstmAe {
        LstmAe {
            encoder: FusedLstm::new(self.features, self.hidden, device),
            decoder: FusedLstm::new(self.hidden, self.hidden, device),
            head: LinearConfig::new(self.hidden, self.features).init(device),
        }
    }
}

impl LstmAe {
    pub fn forward(&self, x: Tensor<3>) -> Reconstruction {
        let [batch, window, _] = x.dims();
        let device = x.device();
        let four_h = 4 * self.encoder.hidden;
        // One GEMM for the whole sequence: [B, T, F] x [F, 4H].
        let projected = self.encoder.input.forward(x);
        let encoded = self.encoder.run(batch, window, &device, |t| {
            projected
                .clone()
                .slice([0..batch, t..t + 1, 0..four_h])
                .reshape([batch, four_h])
        });
        let code = match encoded.last() {
            Some(last) => last.clone(),
            None => Tensor::zeros([batch, self.encoder.hidden], &device),
        };
        let repeated_input = self.decoder.input.forward(code.clone());
        let decoded = self
            .decoder
            .run(batch, window, &device, |_| repeated_input.clone());
        let sequence = Tensor::stack::<3>(decoded, 1);
        Reconstruction {
            output: self.head.forward(sequence),
            code,
            kl: None,
        }
    }
}
