//! Decoders: libjpeg-turbo for JPEG (with DCT-domain downscaling), the `image` crate for the rest.

use std::io::Cursor;

use turbojpeg::{Colorspace, Decompressor, PixelFormat, ScalingFactor};

use super::sniff::{Header, SourceFormat};
use super::PipelineError;

/// Whether this build decodes AVIF (cargo feature `avif`).
pub const AVIF_DECODING: bool = cfg!(feature = "avif");

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

/// Decodes a still image. `min_size` is the smallest stored-orientation size the rest of the
/// pipeline needs; JPEG decoding may shrink towards it by 1/2, 1/4 or 1/8, never below it.
pub fn decode(src: &[u8], header: &Header, min_size: (u32, u32)) -> Result<Raster, PipelineError> {
    match header.format {
        SourceFormat::Jpeg => match decode_jpeg(src, min_size) {
            Err(JpegFailure::Unsupported(reason)) => {
                tracing::debug!(
                    reason,
                    "libjpeg-turbo cannot decode this JPEG; trying the fallback"
                );
                decode_with_image(src, header, image::ImageFormat::Jpeg)
            }
            Err(JpegFailure::Rejected(e)) => Err(e),
            Ok(raster) => Ok(raster),
        },
        SourceFormat::Png => decode_with_image(src, header, image::ImageFormat::Png),
        SourceFormat::Gif => decode_with_image(src, header, image::ImageFormat::Gif),
        SourceFormat::Webp => decode_with_image(src, header, image::ImageFormat::WebP),
        #[cfg(feature = "avif")]
        SourceFormat::Avif => super::avif::decode(src, header),
        #[cfg(not(feature = "avif"))]
        SourceFormat::Avif => Err(PipelineError::Unsupported("AVIF decoding")),
        SourceFormat::Svg => Err(PipelineError::Unsupported("SVG rasterising")),
    }
}

enum JpegFailure {
    /// Valid input libjpeg-turbo does not handle (e.g. 12-bit or lossless): try another decoder.
    Unsupported(String),
    /// Broken input: no other decoder should be asked to make something of it.
    Rejected(PipelineError),
}

/// The coarsest DCT scale whose output still covers `min_size`.
pub fn jpeg_scale(width: u32, height: u32, min_size: (u32, u32)) -> ScalingFactor {
    [
        ScalingFactor::ONE_EIGHTH,
        ScalingFactor::ONE_QUARTER,
        ScalingFactor::ONE_HALF,
    ]
    .into_iter()
    .find(|f| {
        f.scale(width as usize) >= min_size.0 as usize
            && f.scale(height as usize) >= min_size.1 as usize
    })
    .unwrap_or(ScalingFactor::ONE)
}

fn decode_jpeg(src: &[u8], min_size: (u32, u32)) -> Result<Raster, JpegFailure> {
    let internal =
        |e: turbojpeg::Error| JpegFailure::Rejected(PipelineError::Internal(e.to_string()));
    let mut d = Decompressor::new().map_err(internal)?;
    let header = d.read_header(src).map_err(classify)?;
    if header.is_lossless {
        return Err(JpegFailure::Unsupported("lossless JPEG".into()));
    }
    let (w, h) = (header.width as u32, header.height as u32);
    let scale = jpeg_scale(w, h, min_size);
    d.set_scaling_factor(scale).map_err(internal)?;
    let scaled = header.scaled(scale);
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let format = if cmyk {
        PixelFormat::CMYK
    } else {
        PixelFormat::RGB
    };
    let pitch = scaled.width * format.size();
    let mut pixels = vec![0u8; pitch * scaled.height];
    let image = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: scaled.width,
        pitch,
        height: scaled.height,
        format,
    };
    // libjpeg reports a cut-off stream as a warning and pads with grey; the TurboJPEG API turns
    // any warning into an error, which is what refuses truncated files here.
    d.decompress(src, image).map_err(classify)?;
    if cmyk {
        pixels = cmyk_to_rgb(&pixels, adobe_inverted(src));
    }
    Ok(Raster {
        data: pixels,
        width: scaled.width as u32,
        height: scaled.height as u32,
        alpha: false,
    })
}

fn classify(e: turbojpeg::Error) -> JpegFailure {
    let msg = e.to_string();
    let unsupported = [
        "Unsupported JPEG data precision",
        "Unsupported marker",
        "Arithmetic",
    ];
    if unsupported.iter().any(|u| msg.contains(u)) {
        return JpegFailure::Unsupported(msg);
    }
    let truncated = msg.contains("Premature end") || msg.contains("premature end");
    tracing::debug!(error = %msg, "JPEG rejected");
    JpegFailure::Rejected(if truncated {
        PipelineError::Truncated
    } else {
        PipelineError::Corrupt("undecodable JPEG data")
    })
}

/// Photoshop (and libjpeg, which follows it) stores CMYK inverted when it writes an Adobe APP14
/// marker; without the marker the values are plain.
fn adobe_inverted(src: &[u8]) -> bool {
    super::sniff::jpeg_segments(src).any(|s| s.marker == 0xEE && s.body.starts_with(b"Adobe"))
}

/// Naive CMYK → RGB (no CMYK profile is applied, as browsers do without one).
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let [c, m, y, k] = if inverted {
            [p[0], p[1], p[2], p[3]]
        } else {
            [255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]]
        };
        let k = u32::from(k);
        for v in [c, m, y] {
            rgb.push(((u32::from(v) * k + 127) / 255) as u8);
        }
    }
    rgb
}

/// The `image` crate's decoders, with their own allocations bounded by what the header claims.
fn decode_with_image(
    src: &[u8],
    header: &Header,
    format: image::ImageFormat,
) -> Result<Raster, PipelineError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(src), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    // RGBA at 16 bits per channel plus decoder scratch.
    limits.max_alloc = Some(header.pixels().saturating_mul(8).saturating_add(1 << 20));
    reader.limits(limits);
    let image = reader.decode().map_err(from_image_error)?;
    Ok(from_dynamic(image))
}

pub(super) fn from_dynamic(image: image::DynamicImage) -> Raster {
    let (width, height) = (image.width(), image.height());
    if image.color().has_alpha() {
        Raster {
            data: image.into_rgba8().into_raw(),
            width,
            height,
            alpha: true,
        }
    } else {
        Raster {
            data: image.into_rgb8().into_raw(),
            width,
            height,
            alpha: false,
        }
    }
}

pub(super) fn from_image_error(e: image::ImageError) -> PipelineError {
    use image::ImageError as E;
    match e {
        E::Limits(_) => PipelineError::DecoderLimit,
        E::Unsupported(_) => PipelineError::Unsupported("this image variant"),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            PipelineError::Truncated
        }
        E::Decoding(d) => {
            tracing::debug!(error = %d, "image rejected");
            if d.to_string().to_ascii_lowercase().contains("eof") {
                PipelineError::Truncated
            } else {
                PipelineError::Corrupt("undecodable image data")
            }
        }
        other => {
            tracing::debug!(error = %other, "image rejected");
            PipelineError::Corrupt("undecodable image data")
        }
    }
}
