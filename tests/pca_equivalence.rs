//! Baldi & Hornik (1989): an undercomplete linear autoencoder trained on MSE
//! learns the subspace of the first k principal components.

mod common;

use anomalyd::model::{ModelConfig, Network, PcaConfig};
use anomalyd::score::window_errors;
use anomalyd::train::{TrainConfig, fit, prepare};
use burn::prelude::*;
use common::{WINDOW, data_config, linear_dense, series};
use nalgebra::DMatrix;

const K: usize = 4;

fn matrix(tensor: Tensor<2>) -> DMatrix<f64> {
    let [rows, cols] = tensor.dims();
    let values = tensor.into_data().try_to_vec::<f32>().unwrap_or_default();
    DMatrix::from_fn(rows, cols, |r, c| f64::from(values[r * cols + c]))
}

/// Two sinusoids of different strength (a rank-4 signal in window space)
/// under heavy noise: the top four components are well separated from the
/// rest, so the subspace is well defined.
fn correlated_series() -> anomalyd::data::Series {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let values: Vec<f64> = (0..3000)
        .map(|t| {
            let t = t as f64;
            let noise: f64 = rng.sample(rand_distr::StandardNormal);
            (t * 0.31).sin() + 0.6 * (t * 1.07).sin() + 0.3 * noise
        })
        .collect();
    series("correlated.csv", &values, 1)
}

#[test]
fn linear_autoencoder_matches_pca_in_error_and_subspace() {
    let device = common::test_device();
    let data = match prepare(&[correlated_series()], &data_config()) {
        Ok(data) => data,
        Err(e) => panic!("{e}"),
    };
    let config = TrainConfig {
        epochs: 60,
        batch_size: 64,
        learning_rate: 3e-3,
        patience: 10,
        seed: 3,
        // Both must minimise the same loss over the same windows; a refit
        // would drop each one's own worst windows.
        refit_drop: 0.0,
        ..TrainConfig::default()
    };
    let pca_model = ModelConfig::Pca(PcaConfig::new(WINDOW, 1, K));
    let pca = fit(&pca_model, &config, &data, &device, &mut |_| {}).map(|f| f.network);
    let linear = fit(&linear_dense(K), &config, &data, &device, &mut |_| {}).map(|f| f.network);
    let (Ok(pca), Ok(linear)) = (pca, linear) else {
        panic!("fitting failed");
    };
    let mse = |network: &Network| {
        let errors = window_errors(
            network,
            &data.validation,
            data.scored_features,
            &device,
            512,
        )
        .unwrap_or_default();
        errors.iter().map(|e| e.total).sum::<f64>() / errors.len() as f64
    };
    let (pca_mse, ae_mse) = (mse(&pca), mse(&linear));
    assert!(
        ae_mse <= pca_mse * 1.02,
        "linear AE MSE {ae_mse:.6} is not within 2% of PCA's {pca_mse:.6}"
    );

    let (Network::Pca(pca), Network::Dense(dense)) = (&pca, &linear) else {
        panic!("unexpected network kinds");
    };
    let pca_basis = matrix(pca.components.val());
    // The decoder maps code → window; its weight is [k, T] in burn's row
    // layout, so the columns of its transpose span the learned subspace.
    let decoder = matrix(dense.decoder.weight.val()).transpose();
    let learned_basis = decoder.qr().q();
    let cosines = (learned_basis.transpose() * pca_basis).singular_values();
    let largest_angle = cosines
        .iter()
        .map(|c| c.clamp(-1.0, 1.0).acos().to_degrees())
        .fold(0.0f64, f64::max);
    eprintln!(
        "linear AE MSE {ae_mse:.6} vs PCA {pca_mse:.6} (ratio {:.4}); largest principal angle {largest_angle:.3}°",
        ae_mse / pca_mse
    );
    assert!(
        largest_angle < 5.0,
        "largest principal angle between the decoder's span and PCA's is {largest_angle:.2}°"
    );
}
