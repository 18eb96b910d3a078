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

use super::decode::from_image_error;
use super::raster::Raster;
use super::resize::{resize, Plan};
use super::sniff::{Header, SourceFormat};
use super::PipelineError;

/// Formats an animation can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnimatedFormat {
    Gif,
    Webp,
}

impl AnimatedFormat {
    pub(super) fn mime(self) -> &'static str {
        match self {
            AnimatedFormat::Gif => "image/gif",
            AnimatedFormat::Webp => "image/webp",
        }
    }
}

/// Frame pixels decoded so far against `image.max_animation_pixels`, whatever the frames claim
/// (the header's count was checked before decoding).
struct FrameBudget<'h> {
    header: &'h Header,
    limit: u64,
    frames: u32,
}

impl<'h> FrameBudget<'h> {
    fn new(header: &'h Header, limit: u64) -> FrameBudget<'h> {
        FrameBudget {
            header,
            limit,
            frames: 0,
        }
    }

    /// Counts one more frame; refuses the animation once it is over the limit.
    fn charge(&mut self) -> Result<(), PipelineError> {
        self.frames = self.frames.saturating_add(1);
        if self.header.pixels().saturating_mul(u64::from(self.frames)) > self.limit {
            return Err(PipelineError::TooManyFrames {
                frames: self.frames,
                width: self.header.width,
                height: self.header.height,
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// One resized frame and how long it shows.
struct Frame {
    raster: Raster,
    delay_ms: u32,
}

/// Decodes every frame of `src`, resizing each as it comes so only one full-size canvas is held.
/// `budget` caps the total decoded pixels over all frames (`image.max_animation_pixels`: the
/// header's frame count was checked against it already; this holds whatever the frames claim).
pub(super) fn transform_frames(
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
    let mut spent = FrameBudget::new(header, budget);
    for frame in frames {
        spent.charge()?;
        let frame = match frame {
            Ok(frame) => frame,
            // The frames before a break are the animation, as browsers show it.
            Err(e) if !out.is_empty() && header.format != SourceFormat::Webp => {
                tracing::debug!(error = %e, frames = out.len(), "animation ends at a broken frame");
                break;
            }
            Err(e) => return Err(from_image_error(e)),
        };
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

/// Decodes every frame of an animation and keeps none, so that only a file that fully decodes is
/// ever served unchanged: true when it is whole. WebP frames are checked with libwebp (what
/// browsers use), and one it refuses refuses the file; GIF and APNG frames are checked with the
/// decoders that would resize them, and a stream that breaks after its first frame (a missing
/// trailer, a cut) is not whole but still shows the frames before the break, as in browsers.
pub(super) fn validate(src: &[u8], header: &Header, budget: u64) -> Result<bool, PipelineError> {
    if header.format == SourceFormat::Webp {
        return validate_webp_frames(src).map(|()| true);
    }
    let mut spent = FrameBudget::new(header, budget);
    for frame in decode_frames(src, header)? {
        spent.charge()?;
        match frame {
            Ok(_) => {}
            Err(_) if spent.frames > 1 => return Ok(false),
            Err(e) => return Err(from_image_error(e)),
        }
    }
    Ok(true)
}

/// Each ANMF frame of an animated WebP, wrapped as a still WebP of its own and decoded by
/// libwebp; one frame is held at a time.
fn validate_webp_frames(src: &[u8]) -> Result<(), PipelineError> {
    let mut frames = 0;
    for (kind, body) in riff_chunks(src.get(12..).unwrap_or_default()) {
        if kind != b"ANMF" {
            continue;
        }
        frames += 1;
        // 16 bytes of frame header (offset, size, duration, flags), then the frame's chunks.
        let frame = body
            .get(16..)
            .ok_or(PipelineError::Corrupt("short ANMF chunk"))?;
        let still = still_webp(frame, body).ok_or(PipelineError::Corrupt("short ANMF chunk"))?;
        if webp::Decoder::new(&still).decode().is_none() {
            return Err(PipelineError::Corrupt("undecodable WebP animation frame"));
        }
    }
    if frames == 0 {
        return Err(PipelineError::Corrupt("animation without frames"));
    }
    Ok(())
}

/// The (fourcc, payload) chunks of a RIFF body, stopping at the first one that does not fit.
fn riff_chunks(mut b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let kind = b.get(..4)?;
        let len = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?) as usize;
        let body = b.get(8..8usize.checked_add(len)?)?;
        let next = 8 + len + (len & 1);
        b = b.get(next..).unwrap_or_default();
        Some((kind, body))
    })
}

/// A still WebP file holding one animation frame's image chunks (ALPH + VP8, or VP8L). With an
/// alpha chunk, libwebp wants a VP8X header naming the canvas; the frame's own size is used.
fn still_webp(frame: &[u8], anmf: &[u8]) -> Option<Vec<u8>> {
    let le24 = |at: usize| -> Option<u32> {
        let s = anmf.get(at..at + 3)?;
        Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
    };
    let (width_m1, height_m1) = (le24(6)?, le24(9)?);
    let has_alpha = riff_chunks(frame).any(|(kind, _)| kind == b"ALPH");
    let mut out = Vec::with_capacity(frame.len() + 40);
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    if has_alpha {
        out.extend_from_slice(b"VP8X");
        out.extend_from_slice(&10u32.to_le_bytes());
        out.extend_from_slice(&[0x10, 0, 0, 0]);
        out.extend_from_slice(&width_m1.to_le_bytes()[..3]);
        out.extend_from_slice(&height_m1.to_le_bytes()[..3]);
    }
    out.extend_from_slice(frame);
    let riff_len = u32::try_from(out.len() - 8).ok()?;
    out[4..8].copy_from_slice(&riff_len.to_le_bytes());
    Some(out)
}

fn decode_frames<'a>(src: &'a [u8], header: &Header) -> Result<Frames<'a>, PipelineError> {
    let cursor = Cursor::new(src);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    // Three RGBA canvases at once: the composed frame so far, the frame being read, and the
    // composite of a frame that does not cover the whole screen.
    limits.max_alloc = Some(header.pixels().saturating_mul(12).saturating_add(1 << 20));
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
