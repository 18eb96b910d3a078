//! Encoders. None of them writes metadata, which is how EXIF, XMP and comments get stripped.

use image::ImageEncoder;
use turbojpeg::{Compressor, PixelFormat, Subsamp};

use super::options::Format;
use super::raster::Raster;
use super::PipelineError;

/// Whether this build can write a `width` x `height` image in `format` (WebP stops at 16383
/// pixels a side, JPEG at 65500; AVIF has no encoder here).
pub(super) fn can_encode(format: Format, width: u32, height: u32) -> bool {
    let side = width.max(height);
    match format {
        Format::Jpeg => side <= 65_500,
        Format::Webp => side <= 16_383,
        Format::Png => true,
        Format::Avif => false,
    }
}

/// How an image is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// 1..=100, for the lossy formats.
    pub quality: u8,
    /// Keep every colour edge: lossless WebP, and JPEG without chroma subsampling. For palette
    /// images and tiny sources (icons, 1-px patterns), where 4:2:0 smears colours visibly and
    /// the bytes saved are few.
    pub keep_detail: bool,
}

pub fn encode(raster: &Raster, format: Format, how: Encoding) -> Result<Vec<u8>, PipelineError> {
    match format {
        Format::Jpeg => encode_jpeg(raster, how),
        Format::Png => encode_png(raster),
        Format::Webp => encode_webp(raster, how),
        Format::Avif => Err(PipelineError::Unsupported("AVIF encoding")),
    }
}

/// Baseline JPEG with 4:2:0 chroma (4:4:4 when detail is kept). Huffman optimisation stays off:
/// it more than doubles encode time for about 4% smaller files. Alpha, if any, is dropped:
/// callers only ask for JPEG with alpha when the client forced it.
fn encode_jpeg(raster: &Raster, how: Encoding) -> Result<Vec<u8>, PipelineError> {
    let internal = |e: turbojpeg::Error| PipelineError::Internal(e.to_string());
    let mut c = Compressor::new().map_err(internal)?;
    c.set_quality(i32::from(how.quality.clamp(1, 100)))
        .map_err(internal)?;
    let subsamp = if how.keep_detail {
        Subsamp::None
    } else {
        Subsamp::Sub2x2
    };
    c.set_subsamp(subsamp).map_err(internal)?;
    let (format, size) = if raster.alpha {
        (PixelFormat::RGBA, 4)
    } else {
        (PixelFormat::RGB, 3)
    };
    let image = turbojpeg::Image {
        pixels: raster.data.as_slice(),
        width: raster.width as usize,
        pitch: raster.width as usize * size,
        height: raster.height as usize,
        format,
    };
    c.compress_to_vec(image).map_err(internal)
}

fn encode_png(raster: &Raster) -> Result<Vec<u8>, PipelineError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    let color = if raster.alpha {
        image::ExtendedColorType::Rgba8
    } else {
        image::ExtendedColorType::Rgb8
    };
    PngEncoder::new_with_quality(&mut out, CompressionType::Default, FilterType::Adaptive)
        .write_image(&raster.data, raster.width, raster.height, color)
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
    Ok(out)
}

/// Lossy WebP, with a lossy alpha plane when the raster has one; lossless when detail is kept.
fn encode_webp(raster: &Raster, how: Encoding) -> Result<Vec<u8>, PipelineError> {
    let encoder = if raster.alpha {
        webp::Encoder::from_rgba(&raster.data, raster.width, raster.height)
    } else {
        webp::Encoder::from_rgb(&raster.data, raster.width, raster.height)
    };
    let mut config = webp::WebPConfig::new()
        .map_err(|()| PipelineError::Internal("WebP configuration".into()))?;
    config.quality = f32::from(how.quality.clamp(1, 100));
    config.method = 4;
    config.lossless = i32::from(how.keep_detail);
    let encoded = encoder
        .encode_advanced(&config)
        .map_err(|e| PipelineError::Internal(format!("WebP encoding: {e:?}")))?;
    Ok(encoded.to_vec())
}
