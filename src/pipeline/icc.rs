//! Embedded ICC profiles: pixels in a wide-gamut RGB space are converted to sRGB, since the
//! output carries no profile and browsers show untagged images as sRGB.

use std::io::Cursor;

use image::ImageDecoder;
use moxcms::{ColorProfile, DataColorSpace, Layout, RenderingIntent, TransformOptions, Xyzd};

use super::raster::Raster;
use super::sniff::SourceFormat;

/// The embedded profile of `src`, when it has one that is RGB and not sRGB already.
pub(super) fn non_srgb_profile(src: &[u8], format: SourceFormat) -> Option<ColorProfile> {
    let bytes = match format {
        SourceFormat::Jpeg => jpeg_icc(src),
        SourceFormat::Png => image::codecs::png::PngDecoder::new(Cursor::new(src))
            .ok()?
            .icc_profile()
            .ok()
            .flatten(),
        SourceFormat::Webp => image::codecs::webp::WebPDecoder::new(Cursor::new(src))
            .ok()?
            .icc_profile()
            .ok()
            .flatten(),
        _ => None,
    }?;
    let profile = ColorProfile::new_from_slice(&bytes)
        .inspect_err(|e| tracing::debug!(error = ?e, "unreadable ICC profile ignored"))
        .ok()?;
    (profile.color_space == DataColorSpace::Rgb && !is_srgb(&profile)).then_some(profile)
}

/// Converts `raster` from `profile` to sRGB (relative colorimetric). On failure the pixels are
/// left as they are, which is what a browser would show for the untagged output anyway.
pub(super) fn to_srgb(raster: &mut Raster, profile: &ColorProfile) {
    let layout = if raster.alpha {
        Layout::Rgba
    } else {
        Layout::Rgb
    };
    let options = TransformOptions {
        rendering_intent: RenderingIntent::RelativeColorimetric,
        ..TransformOptions::default()
    };
    let srgb = ColorProfile::new_srgb();
    let converted = profile
        .create_transform_8bit(layout, &srgb, layout, options)
        .and_then(|t| {
            let mut out = vec![0u8; raster.data.len()];
            t.transform(&raster.data, &mut out).map(|()| out)
        });
    match converted {
        Ok(out) => raster.data = out,
        Err(e) => tracing::debug!(error = ?e, "ICC conversion skipped"),
    }
}

/// Same primaries as sRGB (the tone curves of such profiles differ negligibly).
fn is_srgb(profile: &ColorProfile) -> bool {
    let srgb = ColorProfile::new_srgb();
    let close = |a: Xyzd, b: Xyzd| {
        (a.x - b.x).abs() < 0.003 && (a.y - b.y).abs() < 0.003 && (a.z - b.z).abs() < 0.003
    };
    close(profile.red_colorant, srgb.red_colorant)
        && close(profile.green_colorant, srgb.green_colorant)
        && close(profile.blue_colorant, srgb.blue_colorant)
}

/// Reassembles the profile from its `APP2 ICC_PROFILE` chunks (numbered, possibly out of order).
fn jpeg_icc(src: &[u8]) -> Option<Vec<u8>> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let mut chunks: Vec<(u8, &[u8])> = super::sniff::jpeg_segments(src)
        .filter(|s| s.marker == 0xE2 && s.body.starts_with(TAG) && s.body.len() > TAG.len() + 2)
        .map(|s| (s.body[TAG.len()], &s.body[TAG.len() + 2..]))
        .collect();
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|&(seq, _)| seq);
    Some(
        chunks
            .into_iter()
            .flat_map(|(_, data)| data.iter().copied())
            .collect(),
    )
}
