//! The autoencoder zoo. Every kind maps a `[B, T, F]` window batch to a
//! reconstruction of the same shape and exposes its code `[B, K]`, so that
//! training, scoring and the regularisers treat all kinds alike.

pub mod artifact;
mod conv;
mod deep;
mod dense;
mod lstm;
pub mod lstm_cpu;
mod pca;
mod vae;

use burn::prelude::*;
use burn::tensor::activation;
use serde::{Deserialize, Serialize};

pub use conv::{ConvAe, ConvAeConfig};
pub use deep::{DeepAe, DeepAeConfig};
pub use dense::{DenseAe, DenseAeConfig};
pub use lstm::{FusedLstm, LstmAe, LstmAeConfig};
pub use pca::{Pca, PcaConfig};
pub use vae::{Vae, VaeConfig};

use crate::error::{Error, Result};

/// Element-wise nonlinearity of the dense kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// No nonlinearity: a linear autoencoder, the one that matches PCA.
    Identity,
    #[default]
    Tanh,
    Sigmoid,
    Relu,
}

impl Activation {
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Identity => x,
            Self::Tanh => activation::tanh(x),
            Self::Sigmoid => activation::sigmoid(x),
            Self::Relu => activation::relu(x),
        }
    }
}

/// The model kinds, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Dense,
    Deep,
    Conv,
    Lstm,
    Vae,
    Pca,
}

/// The full configuration of one model, tagged by kind. This is what the
/// artifact stores and what rebuilds the network at load time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Dense(DenseAeConfig),
    Deep(DeepAeConfig),
    Conv(ConvAeConfig),
    Lstm(LstmAeConfig),
    Vae(VaeConfig),
    Pca(PcaConfig),
}

impl ModelConfig {
    pub fn kind(&self) -> ModelKind {
        match self {
            Self::Dense(_) => ModelKind::Dense,
            Self::Deep(_) => ModelKind::Deep,
            Self::Conv(_) => ModelKind::Conv,
            Self::Lstm(_) => ModelKind::Lstm,
            Self::Vae(_) => ModelKind::Vae,
            Self::Pca(_) => ModelKind::Pca,
        }
    }

    /// `(window, features)`: the input shape the model was built for.
    pub fn input_shape(&self) -> (usize, usize) {
        match self {
            Self::Dense(c) => (c.window, c.features),
            Self::Deep(c) => (c.window, c.features),
            Self::Conv(c) => (c.window, c.features),
            Self::Lstm(c) => (c.window, c.features),
            Self::Vae(c) => (c.window, c.features),
            Self::Pca(c) => (c.window, c.features),
        }
    }

    /// Checks the sizes before anything is allocated.
    pub fn validate(&self) -> Result<()> {
        let (window, features) = self.input_shape();
        if window < 2 {
            return Err(Error::config("--window", "must be at least 2"));
        }
        if features == 0 {
            return Err(Error::config("--columns", "no feature columns"));
        }
        let input = window * features;
        let positive = |field: &str, value: usize| {
            if value == 0 {
                Err(Error::config(field, "must be positive"))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Dense(c) => positive("--code", c.code),
            Self::Deep(c) => c.hidden.iter().try_for_each(|&h| positive("--hidden", h)),
            Self::Conv(c) => {
                positive("--channels", c.channels)?;
                positive("--code", c.code_channels)?;
                if c.kernel % 2 == 0 {
                    return Err(Error::config("--kernel", "must be odd"));
                }
                if window < 4 {
                    return Err(Error::config("--window", "conv needs at least 4"));
                }
                Ok(())
            }
            Self::Lstm(c) => positive("--code", c.hidden),
            Self::Vae(c) => {
                positive("--code", c.latent)?;
                positive("--hidden", c.hidden)
            }
            Self::Pca(c) => {
                positive("--code", c.components)?;
                if c.components > input {
                    return Err(Error::config(
                        "--code",
                        format!("pca needs at most window*features = {input} components"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Builds a freshly initialised network on `device`.
    pub fn init(&self, device: &Device) -> Network {
        match self {
            Self::Dense(c) => Network::Dense(c.init(device)),
            Self::Deep(c) => Network::Deep(c.init(device)),
            Self::Conv(c) => Network::Conv(c.init(device)),
            Self::Lstm(c) => Network::Lstm(c.init(device)),
            Self::Vae(c) => Network::Vae(c.init(device)),
            Self::Pca(c) => Network::Pca(c.init(device)),
        }
    }
}

/// What a forward pass in training yields.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// `[B, T, F]`.
    pub output: Tensor<3>,
    /// `[B, K]`: the code the sparsity penalty acts on.
    pub code: Tensor<2>,
    /// The VAE's KL term per input element, already averaged over the batch.
    pub kl: Option<Tensor<1>>,
}

/// One network of any kind.
#[derive(Module, Debug)]
pub enum Network {
    Dense(DenseAe),
    Deep(DeepAe),
    Conv(ConvAe),
    Lstm(LstmAe),
    Vae(Vae),
    Pca(Pca),
}

impl Network {
    /// Deterministic reconstruction, used for validation and scoring.
    pub fn reconstruct(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Self::Dense(m) => m.forward(x).output,
            Self::Deep(m) => m.forward(x).output,
            Self::Conv(m) => m.forward(x).output,
            Self::Lstm(m) => lstm_cpu_reconstruct(m, &x).unwrap_or_else(|| m.forward(x).output),
            Self::Vae(m) => m.forward_mean(x),
            Self::Pca(m) => m.forward(x).output,
        }
    }

    /// The training forward pass. `latent_noise` is the VAE's standard
    /// normal draw `[B, K]`, supplied by the caller so that it comes from the
    /// run's seeded generator on every backend.
    pub fn forward_train(&self, x: Tensor<3>, latent_noise: Option<Tensor<2>>) -> Reconstruction {
        match self {
            Self::Dense(m) => m.forward(x),
            Self::Deep(m) => m.forward(x),
            Self::Conv(m) => m.forward(x),
            Self::Lstm(m) => m.forward(x),
            Self::Vae(m) => m.forward_sampled(x, latent_noise),
            Self::Pca(m) => m.forward(x),
        }
    }
}

/// `[B, T, F]` → `[B, T·F]`.
pub(crate) fn flatten(x: Tensor<3>) -> Tensor<2> {
    let [batch, window, features] = x.dims();
    x.reshape([batch, window * features])
}

/// `[B, T·F]` → `[B, T, F]`.
pub(crate) fn unflatten(x: Tensor<2>, window: usize, features: usize) -> Tensor<3> {
    let [batch, _] = x.dims();
    x.reshape([batch, window, features])
}

/// The LSTM's hand-written CPU path ([`lstm_cpu`]) where it applies: flex,
/// without autodiff. `None` sends the caller down the burn path.
fn lstm_cpu_reconstruct(model: &lstm::LstmAe, x: &Tensor<3>) -> Option<Tensor<3>> {
    let device = x.device();
    if device != Device::flex() || device.is_autodiff() {
        return None;
    }
    let [batch, window, features] = x.dims();
    let kernel = lstm_cpu::LstmCpu::from_model(model).ok()?;
    let input = x.clone().into_data().try_to_vec::<f32>().ok()?;
    let output = kernel.reconstruct(&input, batch, window);
    Some(Tensor::from_data(
        TensorData::new(output, [batch, window, features]),
        &device,
    ))
}
