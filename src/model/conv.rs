//! The 1-D convolutional autoencoder: strided convolutions over time down to
//! a short, narrow feature map (the code), transposed convolutions back up.

use burn::nn::PaddingConfig1d;
use burn::nn::conv::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::Reconstruction;

/// Two stride-2 convolutions `F → channels → code_channels` halve the time
/// axis twice; two stride-2 transposed convolutions restore it exactly.
#[derive(Config, Debug, PartialEq)]
pub struct ConvAeConfig {
    pub window: usize,
    pub features: usize,
    #[config(default = 16)]
    pub channels: usize,
    /// Channels of the code map, which is `ceil(ceil(T/2)/2)` steps long.
    #[config(default = 4)]
    pub code_channels: usize,
    /// Odd kernel width.
    #[config(default = 5)]
    pub kernel: usize,
}

#[derive(Module, Debug)]
pub struct ConvAe {
    pub down1: Conv1d,
    pub down2: Conv1d,
    pub up1: ConvTranspose1d,
    pub up2: ConvTranspose1d,
}

impl ConvAeConfig {
    pub fn init(&self, device: &Device) -> ConvAe {
        let pad = self.kernel / 2;
        // With an odd kernel k = 2p+1 and padding p, a stride-2 convolution
        // maps L to ceil(L/2), and a stride-2 transposed one maps L to
        // 2L - 1 + padding_out; padding_out ∈ {0, 1} recovers odd or even L.
        let half = |n: usize| n.div_ceil(2);
        let after_first = half(self.window);
        let after_second = half(after_first);
        let out_pad = |target: usize, from: usize| target + 1 - 2 * from;
        let down = |c_in, c_out| {
            Conv1dConfig::new(c_in, c_out, self.kernel)
                .with_stride(2)
                .with_padding(PaddingConfig1d::Explicit(pad, pad))
                .init(device)
        };
        let up = |c_in, c_out, padding_out| {
            ConvTranspose1dConfig::new([c_in, c_out], self.kernel)
                .with_stride(2)
                .with_padding(pad)
                .with_padding_out(padding_out)
                .init(device)
        };
        ConvAe {
            down1: down(self.features, self.channels),
            down2: down(self.channels, self.code_channels),
            up1: up(
                self.code_channels,
                self.channels,
                out_pad(after_first, after_second),
            ),
            up2: up(
                self.channels,
                self.features,
                out_pad(self.window, after_first),
            ),
        }
    }
}

impl ConvAe {
    pub fn forward(&self, x: Tensor<3>) -> Reconstruction {
        // Convolutions want channels first: [B, T, F] → [B, F, T].
        let x = x.swap_dims(1, 2);
        let hidden = relu(self.down1.forward(x));
        let code_map = self.down2.forward(hidden);
        let [batch, channels, steps] = code_map.dims();
        let code = code_map.clone().reshape([batch, channels * steps]);
        let hidden = relu(self.up1.forward(code_map));
        let output = self.up2.forward(hidden).swap_dims(1, 2);
        Reconstruction {
            output,
            code,
            kl: None,
        }
    }
}
