//! The autoencoder zoo. Every kind maps a `[B, T, F]` window batch to a
//! reconstruction of the same shape and exposes its code `[B, K]`, so that
//! training, scoring and the regularisers treat all kinds alike.

pub mod artifact;
mod conv;
pub mod conv_cpu;
mod cpu_gemm;
mod deep;
mod dense;
#[cfg(test)]
mod kernel_testing;
mod lstm;
pub mod lstm_cpu;
#[cfg(feature = "tch")]
pub mod lstm_tch;
mod pca;
mod vae;

use burn::prelude::*;
use burn::tensor::activation;
use rayon::prelude::*;
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

    /// The same model for inputs of `features` features each.
    pub fn with_features(&self, features: usize) -> Self {
        let mut config = self.clone();
        match &mut config {
            Self::Dense(c) => c.features = features,
            Self::Deep(c) => c.features = features,
            Self::Conv(c) => c.features = features,
            Self::Lstm(c) => c.features = features,
            Self::Vae(c) => c.features = features,
            Self::Pca(c) => c.features = features,
        }
        config
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

/// Rows per scoring chunk on flex, whose ops run on one thread each: the
/// batch is cut into chunks this size, scored on rayon's pool. A fixed size,
/// not one per thread, so a window's score does not depend on the thread
/// count. (The LSTM and conv kernels chunk their own batches.)
const SCORING_CHUNK_ROWS: usize = 64;

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
        if let Self::Lstm(m) = self
            && let Some(output) = lstm_kernel_reconstruct(m, &x)
        {
            return output;
        }
        if let Self::Conv(m) = self
            && let Some(output) = conv_kernel_reconstruct(m, &x)
        {
            return output;
        }
        let [batch, ..] = x.dims();
        let device = x.device();
        // flex runs each op on one thread; LibTorch has its own pool.
        if device != Device::flex()
            || device.is_autodiff()
            || batch < 2 * SCORING_CHUNK_ROWS
            || rayon::current_num_threads() < 2
        {
            return self.reconstruct_on_one_thread(x);
        }
        let chunks: Vec<Tensor<3>> = x
            .split(SCORING_CHUNK_ROWS, 0)
            .into_par_iter()
            .map(|chunk| self.reconstruct_on_one_thread(chunk))
            .collect();
        Tensor::cat(chunks, 0)
    }

    fn reconstruct_on_one_thread(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Self::Dense(m) => m.forward(x).output,
            Self::Deep(m) => m.forward(x).output,
            Self::Conv(m) => m.forward(x).output,
            Self::Lstm(m) => m.forward(x).output,
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

/// The conv autoencoder's hand-written CPU path ([`conv_cpu`]) on flex,
/// without autodiff. `None` sends the caller down the burn path.
fn conv_kernel_reconstruct(model: &ConvAe, x: &Tensor<3>) -> Option<Tensor<3>> {
    let device = x.device();
    let [batch, window, features] = x.dims();
    // The kernel copies the weights out on every call (~20 µs): a single
    // window scored faster through burn's ops (26k vs 18k windows/s), two
    // already faster through the kernel (28k vs 21k).
    if device != Device::flex() || device.is_autodiff() || batch < 2 {
        return None;
    }
    let kernel = conv_cpu::ConvCpu::from_model(model, window).ok()?;
    let input = x.clone().into_data().try_to_vec::<f32>().ok()?;
    let output = kernel.reconstruct(&input, batch);
    Some(Tensor::from_data(
        TensorData::new(output, [batch, window, features]),
        &device,
    ))
}

/// The LSTM's own kernels where one applies, without autodiff: the
/// hand-written one on flex ([`lstm_cpu`]), LibTorch's fused LSTM on
/// LibTorch ([`lstm_tch`]). `None` sends the caller down the burn path.
fn lstm_kernel_reconstruct(model: &lstm::LstmAe, x: &Tensor<3>) -> Option<Tensor<3>> {
    let device = x.device();
    if device.is_autodiff() {
        return None;
    }
    if device == Device::flex() {
        let [batch, window, features] = x.dims();
        let kernel = lstm_cpu::LstmCpu::from_model(model).ok()?;
        let input = x.clone().into_data().try_to_vec::<f32>().ok()?;
        let output = kernel.reconstruct(&input, batch, window);
        return Some(Tensor::from_data(
            TensorData::new(output, [batch, window, features]),
            &device,
        ));
    }
    #[cfg(feature = "tch")]
    if let Some(torch) = lstm_tch::torch_device(&device) {
        return match lstm_tch::reconstruct(model, x, torch) {
            Ok(output) => Some(output),
            Err(error) => {
                tracing::warn!(%error, "LibTorch's fused LSTM failed; scoring with burn's ops");
                None
            }
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(x: Tensor<3>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().unwrap()
    }

    fn in_pool<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(work)
    }

    /// Scoring on flex cuts the batch into chunks on rayon's pool: the
    /// windows come back in order, each as one thread alone computes it, and
    /// with the same bits whatever the thread count.
    #[test]
    fn chunked_scoring_matches_one_thread_and_ignores_the_thread_count() {
        let (window, features) = (16, 2);
        let configs = [
            ModelConfig::Dense(DenseAeConfig::new(window, features, 4)),
            ModelConfig::Conv(ConvAeConfig::new(window, features)),
            ModelConfig::Vae(VaeConfig::new(window, features, 3)),
        ];
        let device = Device::flex();
        // Not a multiple of the chunk size: the last chunk is short.
        let batch = 2 * SCORING_CHUNK_ROWS + 5;
        let input: Vec<f32> = (0..batch * window * features)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(input, [batch, window, features]), &device);
        for config in configs {
            let network = config.init(&device);
            let whole = values(network.reconstruct_on_one_thread(x.clone()));
            let on_three = in_pool(3, || values(network.reconstruct(x.clone())));
            let on_two = in_pool(2, || values(network.reconstruct(x.clone())));
            assert_eq!(on_three, on_two, "{:?}", config.kind());
            assert_eq!(whole.len(), on_two.len());
            for (a, b) in whole.iter().zip(&on_two) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "{:?}: {a} vs {b}",
                    config.kind()
                );
            }
        }
    }
}
