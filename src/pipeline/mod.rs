//! The image transform: sniff → header check → decode (shrink-on-load) → resize → orient →
//! colour-convert to sRGB → encode in the negotiated format.
//!
//! [`transform`] is the whole job and the only entry point the server uses; benchmarks time the
//! stages one by one through [`stages`] (feature `_internals`).

mod animation;
#[cfg(feature = "avif")]
mod avif;
// The stages' items are public for the benchmarks; without `_internals` nothing outside the
// crate reaches them.
#[cfg_attr(not(feature = "_internals"), allow(unreachable_pub))]
pub(crate) mod decode;
#[cfg_attr(not(feature = "_internals"), allow(unreachable_pub))]
mod encode;
mod icc;
mod negotiate;
mod options;
#[cfg_attr(not(feature = "_internals"), allow(unreachable_pub))]
mod orient;
#[cfg_attr(not(feature = "_internals"), allow(unreachable_pub))]
mod raster;
#[cfg_attr(not(feature = "_internals"), allow(unreachable_pub))]
mod resize;
#[cfg_attr(not(feature = "_internals"), allow(unreachable_pub))]
mod sniff;

/// The stages one by one, for benchmarks.
#[cfg(feature = "_internals")]
pub mod stages {
    pub mod decode {
        pub use super::super::decode::{decode, Decoded};
    }
    pub mod encode {
        pub use super::super::encode::{encode, Encoding};
    }
    pub mod orient {
        pub use super::super::orient::{apply, read_metadata, Metadata};
    }
    pub mod resize {
        pub use super::super::resize::{resize, Plan};
    }
    pub mod sniff {
        pub use super::super::sniff::{sniff, Header, SourceFormat};
    }
    pub use super::raster::Raster;
}

use bytes::Bytes;

pub use negotiate::{negotiate, FormatSet};
pub use options::{Format, Options, OptionsError, MAX_DIMENSION};

use self::animation::AnimatedFormat;
use self::encode::Encoding;
pub(crate) use self::orient::read_metadata;
use self::orient::Metadata;
use self::raster::Raster;
use self::resize::Plan;
pub(crate) use self::sniff::{sniff, Header, SourceFormat};

/// Work caps from `[image]` in the config: what one image may cost, checked from its header
/// before any decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sources whose header claims more pixels are refused before decoding.
    pub max_src_pixels: u64,
    /// Outputs are scaled down to stay within this.
    pub max_output_pixels: u64,
    /// Frames × pixels an animation may have in all.
    pub max_animation_pixels: u64,
    /// Scans a progressive JPEG may have; each one is a pass over every coefficient.
    pub max_jpeg_scans: u32,
}

/// Sources this small (an 8x8 icon, a 64x64 pattern) are encoded keeping every colour edge.
pub const TINY_SOURCE_PIXELS: u64 = 64 * 64;

/// Scans × pixels a progressive JPEG may cost, in multiples of `max_src_pixels`: the usual
/// scripts (libjpeg's 10 scans, mozjpeg's up to 12) always fit, even at the largest size.
pub const JPEG_SCAN_WORK: u64 = 12;

/// One transform request.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Box (0 = unconstrained), cover, quality, forced format, dpr.
    pub options: &'a Options,
    /// From [`negotiate`].
    pub accepted: FormatSet,
    /// Configured order (`image.formats`).
    pub preference: &'a [Format],
    /// `image.quality`, used when the options name none.
    pub default_quality: u8,
    pub limits: Limits,
    pub allow_svg: bool,
}

/// The encoded result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub bytes: Bytes,
    pub mime: &'static str,
    /// Pixel size of the output (0x0 for SVG, which has no pixel size of its own).
    pub width: u32,
    pub height: u32,
    /// The source bytes are served unchanged.
    pub passthrough: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("empty image")]
    Empty,
    #[error("not an image")]
    NotAnImage,
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("SVG images are not allowed")]
    SvgNotAllowed,
    #[error("image is {width}x{height}, over the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("image needs more memory than its size allows")]
    DecoderLimit,
    #[error(
        "animation of {frames} frames of {width}x{height} is {} pixels in all, over the limit \
         of {limit} (image.max_animation_pixels)",
        u64::from(*frames) * u64::from(*width) * u64::from(*height)
    )]
    TooManyFrames {
        frames: u32,
        width: u32,
        height: u32,
        limit: u64,
    },
    #[error(
        "progressive JPEG of {width}x{height} with {scans} scans: more decoding work than an \
         image may take (image.max_jpeg_scans = {limit}, and scans x pixels at most {JPEG_SCAN_WORK} \
         x image.max_src_pixels)"
    )]
    TooManyScans {
        scans: u32,
        width: u32,
        height: u32,
        limit: u32,
    },
    #[error("image data is truncated")]
    Truncated,
    #[error("corrupt image: {0}")]
    Corrupt(&'static str),
    #[error("internal image processing error: {0}")]
    Internal(String),
}

/// Runs one job on `src`. CPU-bound; the caller runs it on a worker thread.
///
/// Sources that need nothing done (fit the box, no EXIF, same output format) are served as they
/// are when re-encoding would not make them smaller. Animated sources keep their animation (see
/// [`animation`]). AVIF sources pass through unchanged when they fit the box and the client
/// accepts AVIF; otherwise they are decoded when the `avif` feature is built in, and refused (415)
/// when it is not.
pub fn transform(src: &[u8], job: &Job<'_>) -> Result<Output, PipelineError> {
    let header = sniff::sniff(src)?;
    if header.format == SourceFormat::Svg {
        return if job.allow_svg {
            Ok(passthrough(src, &header))
        } else {
            Err(PipelineError::SvgNotAllowed)
        };
    }
    check_source_pixels(&header, &job.limits)?;
    let meta = orient::read_metadata(src, header.format);
    let (dw, dh) = display_size(&header, meta);
    let plan = Plan::new(
        dw,
        dh,
        job.options.target_box(),
        job.options.cover,
        job.limits.max_output_pixels,
    );
    let fits = plan.is_identity(dw, dh);
    let quality = job.options.quality.unwrap_or(job.default_quality);

    if header.animated {
        return transform_animated(src, &header, &plan, fits, job, quality);
    }
    // There is no AVIF encoder, so an AVIF that fits goes out as it is to clients that take it.
    if header.format == SourceFormat::Avif && !meta.has_exif {
        if fits && job.accepted.contains(Format::Avif) {
            return Ok(passthrough(src, &header));
        }
        if !decode::AVIF_DECODING {
            return Err(PipelineError::Unsupported("AVIF decoding"));
        }
    }
    transform_still(src, &header, meta, &plan, job, quality)
}

/// Decode (shrunk on load where the format allows), resize, orient, convert to sRGB, encode.
fn transform_still(
    src: &[u8],
    header: &Header,
    meta: Metadata,
    plan: &Plan,
    job: &Job<'_>,
    quality: u8,
) -> Result<Output, PipelineError> {
    // Resizing before orienting touches fewer pixels; the plan is mapped to the stored axes.
    let stored_plan = if meta.transposes() {
        plan.transposed()
    } else {
        *plan
    };
    let decoded = decode::decode(
        src,
        header,
        stored_plan.min_source_size(header.width, header.height),
        &job.limits,
    )?;
    let mut raster = decoded.raster;
    raster.drop_opaque_alpha();
    let mut resizer = fast_image_resize::Resizer::new();
    let raster = resize::resize(
        &mut resizer,
        raster,
        &stored_plan,
        header.width,
        header.height,
    )?;
    let mut raster = orient::apply(raster, meta.orientation);
    let profile = icc::non_srgb_profile(src, header.format);
    if let Some(profile) = &profile {
        icc::to_srgb(&mut raster, profile);
    }
    let keep_detail = header.palette || header.pixels() <= TINY_SOURCE_PIXELS;
    let format = choose_format(job, &raster, header.palette);
    let bytes = encode::encode(
        &raster,
        format,
        Encoding {
            quality,
            keep_detail,
        },
    )?;

    let (dw, dh) = display_size(header, meta);
    let untouched = decoded.whole
        && plan.is_identity(dw, dh)
        && !meta.has_exif
        && profile.is_none()
        && same_format(header.format, format);
    if untouched && bytes.len() >= src.len() {
        return Ok(passthrough(src, header));
    }
    Ok(Output {
        bytes: bytes.into(),
        mime: format.mime(),
        width: raster.width,
        height: raster.height,
        passthrough: false,
    })
}

/// Passes an animation through when it fits and its format is acceptable, else resizes every
/// frame. Output is animated WebP when forced or accepted and configured, else GIF: a forced
/// JPEG or PNG cannot hold an animation, so it does not apply here.
fn transform_animated(
    src: &[u8],
    header: &Header,
    plan: &Plan,
    fits: bool,
    job: &Job<'_>,
    quality: u8,
) -> Result<Output, PipelineError> {
    let webp_ok = job.accepted.contains(Format::Webp);
    let acceptable = header.format != SourceFormat::Webp || webp_ok;
    // Served unchanged only once every frame is known to decode; a broken tail is re-encoded.
    if fits && acceptable && animation::validate(src, header, job.limits.max_animation_pixels)? {
        return Ok(passthrough(src, header));
    }
    let wants_webp = job.options.format == Some(Format::Webp)
        || (webp_ok && job.preference.contains(&Format::Webp));
    let format = if wants_webp {
        AnimatedFormat::Webp
    } else {
        AnimatedFormat::Gif
    };
    let bytes = animation::transform_frames(
        src,
        header,
        plan,
        job.limits.max_animation_pixels,
        format,
        quality,
    )?;
    Ok(Output {
        bytes: bytes.into(),
        mime: format.mime(),
        width: plan.width,
        height: plan.height,
        passthrough: false,
    })
}

/// Refuses sources whose header claims more pixels (or, animated, more frame pixels) than
/// allowed, before any decoder runs.
pub fn check_source_pixels(header: &Header, limits: &Limits) -> Result<(), PipelineError> {
    if header.pixels() > limits.max_src_pixels {
        return Err(PipelineError::TooManyPixels {
            width: header.width,
            height: header.height,
            limit: limits.max_src_pixels,
        });
    }
    if header.pixels().saturating_mul(u64::from(header.frames)) > limits.max_animation_pixels {
        return Err(PipelineError::TooManyFrames {
            frames: header.frames,
            width: header.width,
            height: header.height,
            limit: limits.max_animation_pixels,
        });
    }
    Ok(())
}

fn display_size(header: &Header, meta: Metadata) -> (u32, u32) {
    if meta.transposes() {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    }
}

/// The forced format when it can be written; else the first configured format the client
/// accepts and we can write, skipping JPEG for images with real transparency or from a palette
/// (JPEG would blur their hard colour edges); else JPEG for opaque photos and PNG for the rest
/// (transparent, palette, or too wide for JPEG).
pub fn choose_format(job: &Job<'_>, raster: &Raster, palette: bool) -> Format {
    let writable = |f: Format| encode::can_encode(f, raster.width, raster.height);
    if let Some(forced) = job.options.format.filter(|&f| writable(f)) {
        return forced;
    }
    let no_jpeg = raster.alpha || palette;
    job.preference
        .iter()
        .copied()
        .find(|&f| job.accepted.contains(f) && writable(f) && !(no_jpeg && f == Format::Jpeg))
        .unwrap_or(if no_jpeg || !writable(Format::Jpeg) {
            Format::Png
        } else {
            Format::Jpeg
        })
}

fn same_format(source: SourceFormat, output: Format) -> bool {
    matches!(
        (source, output),
        (SourceFormat::Jpeg, Format::Jpeg)
            | (SourceFormat::Png, Format::Png)
            | (SourceFormat::Webp, Format::Webp)
            | (SourceFormat::Avif, Format::Avif)
    )
}

fn passthrough(src: &[u8], header: &Header) -> Output {
    Output {
        bytes: Bytes::copy_from_slice(src),
        mime: header.format.mime(),
        width: header.width,
        height: header.height,
        passthrough: true,
    }
}
