//! The pixels every stage passes on.

/// 8-bit pixels, RGB or RGBA, tightly packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub alpha: bool,
}

impl Raster {
    pub fn channels(&self) -> usize {
        if self.alpha {
            4
        } else {
            3
        }
    }

    /// Drops an alpha channel that is opaque everywhere, so the image can go out as JPEG.
    pub fn drop_opaque_alpha(&mut self) {
        if !self.alpha || self.data.chunks_exact(4).any(|p| p[3] != 255) {
            return;
        }
        let mut rgb = Vec::with_capacity(self.data.len() / 4 * 3);
        for p in self.data.chunks_exact(4) {
            rgb.extend_from_slice(&p[..3]);
        }
        self.data = rgb;
        self.alpha = false;
    }
}
