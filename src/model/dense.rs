//! The vanilla autoencoder: one undercomplete hidden layer.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::{Activation, Reconstruction, flatten, unflatten};

/// `T·F → code → T·F`, with `activation` on the code.
#[derive(Config, Debug, PartialEq)]
pub struct DenseAeConfig {
    pub window: usize,
    pub features: usize,
    /// Width of the code layer.
    pub code: usize,
    #[config(default = "Activation::Tanh")]
    pub activation: Activation,
}

#[derive(Module, Debug)]
pub struct DenseAe {
    pub encoder: Linear,
    pub decoder: Linear,
    window: usize,
    features: usize,
    #[module(skip)]
    activation: Activation,
}

impl DenseAeConfig {
    pub fn init(&self, device: &Device) -> DenseAe {
        let input = self.window * self.features;
        DenseAe {
            encoder: LinearConfig::new(input, self.code).init(device),
            decoder: LinearConfig::new(self.code, input).init(device),
            window: self.window,
            features: self.features,
            activation: self.activation,
        }
    }
}

impl DenseAe {
    /// `[B, T, F]` → reconstruction `[B, T, F]`, code `[B, K]`.
    pub fn forward(&self, x: Tensor<3>) -> Reconstruction {
        let code = self.activation.apply(self.encoder.forward(flatten(x)));
        let output = unflatten(
            self.decoder.forward(code.clone()),
            self.window,
            self.features,
        );
        Reconstruction {
            output,
            code,
            kl: None,
        }
    }

    /// The contractive penalty ‖∂h/∂x‖²_F averaged over the batch, in the
    /// closed form for a one-layer encoder h = s(Wx + b) (Rifai et al. 2011):
    /// Σ_j s'(a_j)² Σ_i W_ij². `None` when the activation has no such form.
    pub fn contractive_penalty(&self, code: &Tensor<2>) -> Option<Tensor<1>> {
        let slope = match self.activation {
            Activation::Tanh => code.clone().powf_scalar(2.0).neg().add_scalar(1.0),
            Activation::Sigmoid => code.clone() * code.clone().neg().add_scalar(1.0),
            Activation::Identity | Activation::Relu => return None,
        };
        // Row layout: the weight is [input, code], so summing over dim 0 gives
        // one squared column norm per code unit.
        let column_norms = self.encoder.weight.val().powf_scalar(2.0).sum_dim(0);
        let per_window = (slope.powf_scalar(2.0) * column_norms).sum_dim(1);
        Some(per_window.mean())
    }
}
