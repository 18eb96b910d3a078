//! Output geometry (fit, cover, caps) and Lanczos3 resampling with `fast_image_resize`.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{PixelType, ResizeOptions, Resizer};

use super::raster::Raster;
use super::PipelineError;

/// A region of the source, in source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// Where the output comes from and how big it is, in display orientation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub width: u32,
    pub height: u32,
    /// The part of the source that is scaled to the output (`None` = all of it).
    pub crop: Option<Crop>,
}

impl Plan {
    /// Fits `(src_w, src_h)` into `target` (0 = unconstrained), or fills it and crops the centre
    /// with `cover`. Never upscales and never exceeds `max_pixels`.
    pub fn new(src_w: u32, src_h: u32, target: (u32, u32), cover: bool, max_pixels: u64) -> Plan {
        let (sw, sh) = (f64::from(src_w), f64::from(src_h));
        let (bw, bh) = target;
        let ratio = |b: u32, s: f64| f64::from(b) / s;
        let mut plan = if cover && bw > 0 && bh > 0 {
            let scale = ratio(bw, sw).max(ratio(bh, sh)).min(1.0);
            let width = bw.min(scaled(sw, scale));
            let height = bh.min(scaled(sh, scale));
            let (cw, ch) = (f64::from(width) / scale, f64::from(height) / scale);
            let crop = (cw < sw - 0.5 || ch < sh - 0.5).then(|| Crop {
                left: (sw - cw.min(sw)) / 2.0,
                top: (sh - ch.min(sh)) / 2.0,
                width: cw.min(sw),
                height: ch.min(sh),
            });
            Plan {
                width,
                height,
                crop,
            }
        } else {
            let mut scale: f64 = 1.0;
            if bw > 0 {
                scale = scale.min(ratio(bw, sw));
            }
            if bh > 0 {
                scale = scale.min(ratio(bh, sh));
            }
            Plan {
                width: scaled(sw, scale),
                height: scaled(sh, scale),
                crop: None,
            }
        };
        let pixels = u64::from(plan.width) * u64::from(plan.height);
        if pixels > max_pixels.max(1) {
            let shrink = (max_pixels.max(1) as f64 / pixels as f64).sqrt();
            plan.width = (f64::from(plan.width) * shrink).floor().max(1.0) as u32;
            plan.height = (f64::from(plan.height) * shrink).floor().max(1.0) as u32;
        }
        plan
    }

    /// True when the output is the source as it is.
    pub fn is_identity(&self, src_w: u32, src_h: u32) -> bool {
        self.crop.is_none() && self.width == src_w && self.height == src_h
    }

    /// The same plan for the source as stored, before an orientation that swaps the axes.
    /// A centred crop stays centred under flips, so only the axes need swapping.
    pub fn transposed(self) -> Plan {
        Plan {
            width: self.height,
            height: self.width,
            crop: self.crop.map(|c| Crop {
                left: c.top,
                top: c.left,
                width: c.height,
                height: c.width,
            }),
        }
    }

    /// The smallest decoded size that still yields this output without upscaling.
    pub fn min_source_size(&self, src_w: u32, src_h: u32) -> (u32, u32) {
        match self.crop {
            None => (self.width, self.height),
            Some(c) => {
                let need = |out: u32, part: f64, full: u32| {
                    (f64::from(out) * f64::from(full) / part).ceil() as u32
                };
                (
                    need(self.width, c.width, src_w).min(src_w),
                    need(self.height, c.height, src_h).min(src_h),
                )
            }
        }
    }
}

fn scaled(size: f64, scale: f64) -> u32 {
    (size * scale).round().max(1.0) as u32
}

/// Resamples `raster` (which may be a DCT-downscaled decode of a `full_w` x `full_h` source)
/// following `plan`. Alpha is premultiplied during filtering so edges do not darken.
pub fn resize(
    resizer: &mut Resizer,
    raster: Raster,
    plan: &Plan,
    full_w: u32,
    full_h: u32,
) -> Result<Raster, PipelineError> {
    if plan.is_identity(raster.width, raster.height) {
        return Ok(raster);
    }
    let pixel_type = if raster.alpha {
        PixelType::U8x4
    } else {
        PixelType::U8x3
    };
    let internal = |e: &dyn std::fmt::Display| PipelineError::Internal(e.to_string());
    let src = ImageRef::new(raster.width, raster.height, &raster.data, pixel_type)
        .map_err(|e| internal(&e))?;
    let mut dst = Image::new(plan.width, plan.height, pixel_type);
    let mut options = ResizeOptions::new().use_alpha(raster.alpha);
    if let Some(c) = plan.crop {
        let (fx, fy) = (
            f64::from(raster.width) / f64::from(full_w),
            f64::from(raster.height) / f64::from(full_h),
        );
        options = options.crop(c.left * fx, c.top * fy, c.width * fx, c.height * fy);
    }
    resizer
        .resize(&src, &mut dst, &options)
        .map_err(|e| internal(&e))?;
    Ok(Raster {
        data: dst.into_vec(),
        width: plan.width,
        height: plan.height,
        alpha: raster.alpha,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_never_upscales() {
        let p = Plan::new(4000, 3000, (640, 480), false, u64::MAX);
        assert_eq!((p.width, p.height, p.crop), (640, 480, None));
        let p = Plan::new(640, 422, (320, 0), false, u64::MAX);
        assert_eq!((p.width, p.height), (320, 211));
        let p = Plan::new(100, 50, (1000, 1000), false, u64::MAX);
        assert_eq!((p.width, p.height), (100, 50));
        let p = Plan::new(10000, 100, (0, 0), false, u64::MAX);
        assert_eq!((p.width, p.height), (10000, 100));
    }

    #[test]
    fn cover_fills_the_box_and_crops_the_centre() {
        let p = Plan::new(640, 480, (200, 200), true, u64::MAX);
        assert_eq!((p.width, p.height), (200, 200));
        let c = p.crop.unwrap_or(Crop {
            left: -1.0,
            top: -1.0,
            width: 0.0,
            height: 0.0,
        });
        assert!((c.left - 80.0).abs() < 0.01 && c.top.abs() < 0.01, "{c:?}");
        assert!((c.width - 480.0).abs() < 0.01 && (c.height - 480.0).abs() < 0.01);
        // A box larger than the source: crop to the box's shape without upscaling.
        let p = Plan::new(640, 480, (800, 100), true, u64::MAX);
        assert_eq!((p.width, p.height), (640, 100));
    }

    #[test]
    fn output_pixel_cap_shrinks_the_result() {
        let p = Plan::new(8000, 6000, (0, 0), false, 12_000_000);
        assert!(u64::from(p.width) * u64::from(p.height) <= 12_000_000);
        assert!((f64::from(p.width) / f64::from(p.height) - 4.0 / 3.0).abs() < 0.01);
    }
}
