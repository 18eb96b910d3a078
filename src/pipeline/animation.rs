//! Animated GIF, WebP and APNG.
//!
//! Animation is never silently dropped: a source that already fits the box is served unchanged
//! when its format is acceptable (GIF and APNG always are; WebP when the client accepts it);
//! otherwise every frame is resized and the animation re-encoded — as animated WebP when the
//! client accepts WebP and it is configured, else as an infinitely looping GIF — with the source's
//! frame timing kept.

use std::io::Cursor;

use fast_image_resize::Resizer;
use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, Delay, Frames, RgbaImage};

use super::decode::{from_image_error, Raster};
use super::resize::{resize, Plan};
use super::sniff::{Header, SourceFormat};
use super::PipelineError;

/// Formats an animation can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnimatedFormat {
    Gif,
    Webp,
}

impl AnimatedFormat {
    pub fn mime(self) -> &'static str {
        match self {
            AnimatedFormat::Gif => "image/gif",
            AnimatedFormat::Webp => "image/webp",
        }
    }
}

/// One resized frame and how long it shows.
struct Frame {
    raster: Raster,
    delay_ms: u32,
}

/// Decodes every frame of `src`, resizing each as it comes so only one full-size canvas is held.
/// `budget` caps the total decoded pixels over all frames (a guard against frame-count bombs).
pub fn transform_frames(
    src: &[u8],
    header: &Header,
    plan: &Plan,
    budget: u64,
    output: AnimatedFormat,
    quality: u8,
) -> Result<Vec<u8>, PipelineError> {
    let frames = decode_frames(src, header)?;
    let mut resizer = Resizer::new();
    let mut out = Vec::new();
    let mut spent: u64 = 0;
    for frame in frames {
        spent = spent.saturating_add(header.pixels());
        if spent > budget {
            return Err(PipelineError::TooManyPixels {
                width: header.width,
                height: header.height,
                limit: budget,
            });
        }
        let frame = frame.map_err(from_image_error)?;
        let (num, den) = frame.delay().numer_denom_ms();
        let delay_ms = num.checked_div(den).unwrap_or(0);
        let buffer = frame.into_buffer();
        let raster = Raster {
            width: buffer.width(),
            height: buffer.height(),
            data: buffer.into_raw(),
            alpha: true,
        };
        out.push(Frame {
            raster: resize(&mut resizer, raster, plan, header.width, header.height)?,
            delay_ms,
        });
    }
    if out.is_empty() {
        return Err(PipelineError::Corrupt("animation without frames"));
    }
    match output {
        AnimatedFormat::Webp => encode_webp(&out, plan, quality),
        AnimatedFormat::Gif => encode_gif(out),
    }
}

fn decode_frames<'a>(src: &'a [u8], header: &Header) -> Result<Frames<'a>, PipelineError> {
    let cursor = Cursor::new(src);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(header.pixels().saturating_mul(8).saturating_add(1 << 20));
    let frames = match header.format {
        SourceFormat::Gif => {
            let mut d = GifDecoder::new(cursor).map_err(from_image_error)?;
            image::ImageDecoder::set_limits(&mut d, limits).map_err(from_image_error)?;
            d.into_frames()
        }
        SourceFormat::Webp => {
            let mut d = WebPDecoder::new(cursor).map_err(from_image_error)?;
            image::ImageDecoder::set_limits(&mut d, limits).map_err(from_image_error)?;
            d.into_frames()
        }
        SourceFormat::Png => {
            let mut d = PngDecoder::new(cursor).map_err(from_image_error)?;
            image::ImageDecoder::set_limits(&mut d, limits).map_err(from_image_error)?;
            d.apng().map_err(from_image_error)?.into_frames()
        }
        _ => return Err(PipelineError::Unsupported("animation in this format")),
    };
    Ok(frames)
}

fn encode_gif(frames: Vec<Frame>) -> Result<Vec<u8>, PipelineError> {
    let internal = |e: image::ImageError| PipelineError::Internal(e.to_string());
    let mut out = Vec::new();
    {
        // Speed 10 quantises well enough for thumbnails at a fraction of the best setting's cost.
        let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
        encoder.set_repeat(Repeat::Infinite).map_err(internal)?;
        for f in frames {
            let buffer = RgbaImage::from_raw(f.raster.width, f.raster.height, f.raster.data)
                .ok_or_else(|| PipelineError::Internal("frame buffer size".into()))?;
            let delay = Delay::from_numer_denom_ms(f.delay_ms, 1);
            encoder
                .encode_frame(image::Frame::from_parts(buffer, 0, 0, delay))
                .map_err(internal)?;
        }
    }
    Ok(out)
}

fn encode_webp(frames: &[Frame], plan: &Plan, quality: u8) -> Result<Vec<u8>, PipelineError> {
    let mut config = webp::WebPConfig::new()
        .map_err(|()| PipelineError::Internal("WebP configuration".into()))?;
    config.quality = f32::from(quality.clamp(1, 100));
    let mut encoder = webp::AnimEncoder::new(plan.width, plan.height, &config);
    encoder.set_loop_count(0);
    let mut timestamp: i32 = 0;
    for f in frames {
        encoder.add_frame(webp::AnimFrame::from_rgba(
            &f.raster.data,
            f.raster.width,
            f.raster.height,
            timestamp,
        ));
        timestamp = timestamp.saturating_add(i32::try_from(f.delay_ms).unwrap_or(i32::MAX));
    }
    let encoded = encoder
        .try_encode()
        .map_err(|e| PipelineError::Internal(format!("animated WebP encoding: {e:?}")))?;
    Ok(encoded.to_vec())
}
