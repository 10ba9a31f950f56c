//! What the hand-written kernels' tests share: the burn reference they are
//! held to, and how their figures are compared with it.

use burn::prelude::*;

use super::Reconstruction;

/// A tensor's values, flat.
pub fn flat<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// Asserts that `ours` matches `reference` element by element within
/// `tolerance` of the reference's largest magnitude.
pub fn close(what: &str, ours: &[f32], reference: &[f32], tolerance: f32) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let scale = reference.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= tolerance * scale,
            "{what}[{i}]: {a} vs {b} (scale {scale})"
        );
    }
}

/// The training objective computed with burn's ops, the reference for the
/// kernels' losses and (through autodiff) their gradients: mean squared
/// error, plus `sparse` times the mean absolute code.
pub fn reference_objective(
    pass: Reconstruction,
    target: Tensor<3>,
    sparse: Option<f64>,
) -> Tensor<1> {
    let loss = (pass.output - target).powf_scalar(2.0).mean();
    match sparse {
        Some(weight) => loss + pass.code.abs().mean().mul_scalar(weight),
        None => loss,
    }
}
