//! PCA as a (linear) autoencoder: the reference that an undercomplete linear
//! autoencoder must match (Baldi & Hornik 1989). Fitted in closed form by an
//! eigendecomposition of the training windows' covariance; stored and scored
//! like every other kind.

use burn::module::Param;
use burn::prelude::*;
use nalgebra::{DMatrix, SymmetricEigen};

use super::{Reconstruction, flatten, unflatten};
use crate::data::WindowSet;

#[derive(Config, Debug, PartialEq)]
pub struct PcaConfig {
    pub window: usize,
    pub features: usize,
    /// Number of principal components kept.
    pub components: usize,
}

#[derive(Module, Debug)]
pub struct Pca {
    /// Mean window `[T·F]`.
    pub mean: Param<Tensor<1>>,
    /// Orthonormal principal directions as columns `[T·F, k]`.
    pub components: Param<Tensor<2>>,
    window: usize,
    features: usize,
}

impl PcaConfig {
    pub fn init(&self, device: &Device) -> Pca {
        let d = self.window * self.features;
        Pca {
            mean: Param::from_tensor(Tensor::zeros([d], device)),
            components: Param::from_tensor(Tensor::zeros([d, self.components], device)),
            window: self.window,
            features: self.features,
        }
    }

    /// Fits mean and components on `windows`.
    pub fn fit(&self, windows: &WindowSet, ids: &[usize], device: &Device) -> Pca {
        let d = self.window * self.features;
        let n = ids.len();
        // The windows as the model will see them (centred ones included).
        let mut seen = Vec::new();
        windows.gather(ids, &mut seen);
        let mut mean = vec![0.0f64; d];
        for window in seen.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(window) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let centred = DMatrix::from_fn(n, d, |row, col| f64::from(seen[row * d + col]) - mean[col]);
        let covariance = centred.tr_mul(&centred) / (n.max(2) - 1) as f64;
        let eigen = SymmetricEigen::new(covariance);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let k = self.components;
        let mut basis = vec![0.0f32; d * k];
        for (j, &source) in order.iter().take(k).enumerate() {
            let column = eigen.eigenvectors.column(source);
            // Eigenvectors have no sign of their own; fixing it (largest
            // entry positive) makes the artifact reproducible.
            let pivot = column
                .iter()
                .fold(0.0f64, |a, &b| if b.abs() > a.abs() { b } else { a });
            let sign = if pivot < 0.0 { -1.0 } else { 1.0 };
            for i in 0..d {
                basis[i * k + j] = (sign * column[i]) as f32;
            }
        }
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        Pca {
            mean: Param::from_tensor(Tensor::from_data(TensorData::new(mean, [d]), device)),
            components: Param::from_tensor(Tensor::from_data(
                TensorData::new(basis, [d, k]),
                device,
            )),
            window: self.window,
            features: self.features,
        }
    }
}

impl Pca {
    pub fn forward(&self, x: Tensor<3>) -> Reconstruction {
        let mean = self.mean.val().unsqueeze_dim::<2>(0);
        let basis = self.components.val();
        let centred = flatten(x) - mean.clone();
        let code = centred.matmul(basis.clone());
        let flat = code.clone().matmul(basis.transpose()) + mean;
        Reconstruction {
            output: unflatten(flat, self.window, self.features),
            code,
            kl: None,
        }
    }
}
