//! The variational autoencoder (Kingma & Welling 2014) over flattened
//! windows.
//!
//! Scoring uses the reconstruction from the mean code μ, not the negative
//! ELBO: it is deterministic (the same window always gets the same score,
//! which a causal threshold and the daemon's reproducibility need), and it is
//! on the same scale as every other kind's error, so thresholds and
//! comparisons carry over. The KL term only measures how unusual the code is,
//! which the reconstruction already reflects.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::{Reconstruction, flatten, unflatten};

#[derive(Config, Debug, PartialEq)]
pub struct VaeConfig {
    pub window: usize,
    pub features: usize,
    /// Width of the encoder's and decoder's hidden layer.
    #[config(default = 64)]
    pub hidden: usize,
    /// Size of the latent code.
    pub latent: usize,
    /// Weight of the KL term (β-VAE; 1 is the plain ELBO).
    #[config(default = 1.0)]
    pub beta: f64,
}

#[derive(Module, Debug)]
pub struct Vae {
    pub encoder: Linear,
    pub mean: Linear,
    pub log_variance: Linear,
    pub decoder_hidden: Linear,
    pub decoder_out: Linear,
    window: usize,
    features: usize,
    beta: f64,
}

impl VaeConfig {
    pub fn init(&self, device: &Device) -> Vae {
        let input = self.window * self.features;
        Vae {
            encoder: LinearConfig::new(input, self.hidden).init(device),
            mean: LinearConfig::new(self.hidden, self.latent).init(device),
            log_variance: LinearConfig::new(self.hidden, self.latent).init(device),
            decoder_hidden: LinearConfig::new(self.latent, self.hidden).init(device),
            decoder_out: LinearConfig::new(self.hidden, input).init(device),
            window: self.window,
            features: self.features,
            beta: self.beta,
        }
    }
}

impl Vae {
    fn encoder_hidden(&self, x: Tensor<3>) -> Tensor<2> {
        relu(self.encoder.forward(flatten(x)))
    }

    fn encode(&self, x: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
        let hidden = self.encoder_hidden(x);
        (
            self.mean.forward(hidden.clone()),
            self.log_variance.forward(hidden),
        )
    }

    fn decode(&self, z: Tensor<2>) -> Tensor<3> {
        let hidden = relu(self.decoder_hidden.forward(z));
        unflatten(self.decoder_out.forward(hidden), self.window, self.features)
    }

    /// Reconstruction from the mean code; the variance layer is not run,
    /// scoring has no use for it.
    pub fn forward_mean(&self, x: Tensor<3>) -> Tensor<3> {
        let mean = self.mean.forward(self.encoder_hidden(x));
        self.decode(mean)
    }

    /// The reparameterised pass: z = μ + σ·ε. Without `noise` it falls back
    /// to ε = 0 (the mean code). The KL term is per input element so that it
    /// adds to the per-element MSE on the scale of the ELBO divided by T·F.
    pub fn forward_sampled(&self, x: Tensor<3>, noise: Option<Tensor<2>>) -> Reconstruction {
        let (mean, log_variance) = self.encode(x);
        let z = match noise {
            Some(eps) => mean.clone() + log_variance.clone().mul_scalar(0.5).exp() * eps,
            None => mean.clone(),
        };
        let kl_per_window = (log_variance.clone().add_scalar(1.0)
            - mean.clone().powf_scalar(2.0)
            - log_variance.exp())
        .sum_dim(1)
        .mul_scalar(-0.5);
        let elements = (self.window * self.features) as f64;
        let kl = kl_per_window.mean().mul_scalar(self.beta / elements);
        Reconstruction {
            output: self.decode(z),
            code: mean,
            kl: Some(kl),
        }
    }
}
