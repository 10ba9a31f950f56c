//! The multilayer autoencoder: a symmetric stack whose middle layer is the
//! code.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::{Activation, Reconstruction, flatten, unflatten};

/// Encoder `T·F → hidden[0] → … → hidden[last]` (the code, linear), decoder
/// the mirror image back to `T·F` (linear output), `activation` between.
#[derive(Config, Debug, PartialEq)]
pub struct DeepAeConfig {
    pub window: usize,
    pub features: usize,
    /// Encoder layer widths; the last one is the code.
    pub hidden: Vec<usize>,
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
}

#[derive(Module, Debug)]
pub struct DeepAe {
    pub encoder: Vec<Linear>,
    pub decoder: Vec<Linear>,
    window: usize,
    features: usize,
    #[module(skip)]
    activation: Activation,
}

impl DeepAeConfig {
    pub fn init(&self, device: &Device) -> DeepAe {
        let mut widths = vec![self.window * self.features];
        widths.extend(&self.hidden);
        let layers = |sizes: Vec<usize>| {
            sizes
                .windows(2)
                .map(|pair| LinearConfig::new(pair[0], pair[1]).init(device))
                .collect()
        };
        let encoder = layers(widths.clone());
        widths.reverse();
        DeepAe {
            encoder,
            decoder: layers(widths),
            window: self.window,
            features: self.features,
            activation: self.activation,
        }
    }
}

impl DeepAe {
    fn stack(&self, layers: &[Linear], mut x: Tensor<2>) -> Tensor<2> {
        let last = layers.len().saturating_sub(1);
        for (i, layer) in layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.activation.apply(x);
            }
        }
        x
    }

    pub fn forward(&self, x: Tensor<3>) -> Reconstruction {
        let code = self.stack(&self.encoder, flatten(x));
        let flat = self.stack(&self.decoder, code.clone());
        Reconstruction {
            output: unflatten(flat, self.window, self.features),
            code,
            kl: None,
        }
    }
}
