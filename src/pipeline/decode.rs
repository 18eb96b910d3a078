//! Decoders, each the one browsers agree with: libjpeg-turbo for JPEG (with DCT-domain
//! downscaling), libwebp for WebP, the `png` crate row by row for PNG, the `image` crate for GIF.
//!
//! The rule for damaged files is the browsers': a file decodes when all of its pixels are there.
//! Recoverable JPEG warnings (stray bytes before a marker, odd scan parameters) and a PNG stream
//! that is cut or damaged after its last row are tolerated; missing pixel data is refused.

use std::io::Cursor;

use turbojpeg::{Colorspace, Decompressor, PixelFormat, ScalingFactor};

use super::raster::Raster;
use super::sniff::{self, Header, SourceFormat};
use super::{Limits, PipelineError, JPEG_SCAN_WORK};

/// Whether this build decodes AVIF (cargo feature `avif`).
pub(crate) const AVIF_DECODING: bool = cfg!(feature = "avif");

/// A decoded still image, and whether its file was whole: every pixel is there either way, but
/// a file with tolerated damage (see the module's rule) is never served as it is.
#[derive(Debug)]
pub struct Decoded {
    pub raster: Raster,
    pub whole: bool,
}

/// Decodes a still image. `min_size` is the smallest stored-orientation size the rest of the
/// pipeline needs; JPEG decoding may shrink towards it by 1/2, 1/4 or 1/8, never below it.
pub fn decode(
    src: &[u8],
    header: &Header,
    min_size: (u32, u32),
    limits: &Limits,
) -> Result<Decoded, PipelineError> {
    let whole = |raster| Decoded {
        raster,
        whole: true,
    };
    match header.format {
        SourceFormat::Jpeg => match decode_jpeg(src, header, min_size, limits) {
            Err(JpegFailure::Unsupported { reason, damaged }) => {
                tracing::debug!(
                    reason,
                    "libjpeg-turbo cannot decode this JPEG; trying the fallback"
                );
                let raster = decode_with_image(src, header, image::ImageFormat::Jpeg)?;
                Ok(Decoded {
                    raster,
                    whole: !damaged,
                })
            }
            Err(JpegFailure::Rejected(e)) => Err(e),
            Ok(decoded) => Ok(decoded),
        },
        SourceFormat::Png => decode_png(src, header),
        SourceFormat::Gif => decode_with_image(src, header, image::ImageFormat::Gif).map(whole),
        SourceFormat::Webp => decode_webp(src).map(whole),
        #[cfg(feature = "avif")]
        SourceFormat::Avif => super::avif::decode(src, header).map(whole),
        #[cfg(not(feature = "avif"))]
        SourceFormat::Avif => Err(PipelineError::Unsupported("AVIF decoding")),
        SourceFormat::Svg => Err(PipelineError::Unsupported("SVG rasterising")),
    }
}

enum JpegFailure {
    /// Input libjpeg-turbo does not handle (12-bit, lossless, a warning in the header): try
    /// another decoder. `damaged` when the file had something to tolerate.
    Unsupported { reason: String, damaged: bool },
    /// Broken input: no other decoder should be asked to make something of it.
    Rejected(PipelineError),
}

impl JpegFailure {
    fn unsupported(reason: impl Into<String>) -> JpegFailure {
        JpegFailure::Unsupported {
            reason: reason.into(),
            damaged: false,
        }
    }
}

/// The coarsest DCT scale whose output still covers `min_size`.
pub(crate) fn jpeg_scale(width: u32, height: u32, min_size: (u32, u32)) -> ScalingFactor {
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

/// Refuses a progressive JPEG whose scans would cost more than an image may, before decoding:
/// each scan is a pass over every coefficient, so hundreds of redundant scans turn a small file
/// into minutes of work (and TurboJPEG's own scan limit would only stop it after the work).
pub(crate) fn check_jpeg_scans(
    src: &[u8],
    header: &Header,
    limits: &Limits,
) -> Result<(), PipelineError> {
    let scans = sniff::jpeg_scans(src);
    let work = u64::from(scans).saturating_mul(header.pixels());
    if scans > limits.max_jpeg_scans || work > limits.max_src_pixels.saturating_mul(JPEG_SCAN_WORK)
    {
        return Err(PipelineError::TooManyScans {
            scans,
            width: header.width,
            height: header.height,
            limit: limits.max_jpeg_scans,
        });
    }
    Ok(())
}

fn decode_jpeg(
    src: &[u8],
    header: &Header,
    min_size: (u32, u32),
    limits: &Limits,
) -> Result<Decoded, JpegFailure> {
    check_jpeg_scans(src, header, limits).map_err(JpegFailure::Rejected)?;
    let src = sniff::jpeg_without_stray_bytes(src);
    let mut whole = matches!(src, std::borrow::Cow::Borrowed(_));
    let internal =
        |e: turbojpeg::Error| JpegFailure::Rejected(PipelineError::Internal(e.to_string()));
    let mut d = Decompressor::new().map_err(internal)?;
    // Also enforced inside libjpeg, in case the count above and the decoder ever disagree.
    d.set_scan_limit(limits.max_jpeg_scans).map_err(internal)?;
    let header = match d.read_header(&src) {
        Ok(header) => header,
        // A warning in the header stops TurboJPEG before any pixel; the fallback decoder
        // reads through it.
        Err(e) if recoverable_warning(&e.to_string()) => {
            return Err(JpegFailure::Unsupported {
                reason: e.to_string(),
                damaged: true,
            })
        }
        Err(e) => return Err(classify(e)),
    };
    if header.is_lossless {
        return Err(JpegFailure::unsupported("lossless JPEG"));
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
    // TurboJPEG reports a libjpeg warning in the scans as a failure after decoding everything;
    // only the warnings that mean missing pixel data (a cut-off stream padded with grey) refuse.
    match d.decompress(&src, image) {
        Ok(()) => {}
        Err(e) if recoverable_warning(&e.to_string()) => {
            tracing::debug!(warning = %e, "JPEG decoded through a recoverable warning");
            whole = false;
        }
        Err(e) => return Err(classify(e)),
    }
    if cmyk {
        pixels = cmyk_to_rgb(&pixels, adobe_inverted(&src));
    }
    Ok(Decoded {
        raster: Raster {
            data: pixels,
            width: scaled.width as u32,
            height: scaled.height as u32,
            alpha: false,
        },
        whole,
    })
}

/// libjpeg warnings after which every pixel was still decoded (jerror.h's JWRN_* texts). Missing
/// data (`Premature end of JPEG file`, `premature end of data segment`), corrupt entropy codes and
/// lost restart intervals are not in the list: they leave pixels made up.
fn recoverable_warning(message: &str) -> bool {
    const RECOVERABLE: [&str; 6] = [
        "extraneous bytes before marker",
        "Invalid SOS parameters for sequential JPEG",
        "Inconsistent progression sequence",
        "Unknown Adobe color transform code",
        "Warning: unknown JFIF revision number",
        "Corrupt JPEG data: bad ICC marker",
    ];
    RECOVERABLE.iter().any(|w| message.contains(w))
}

fn classify(e: turbojpeg::Error) -> JpegFailure {
    let msg = e.to_string();
    let unsupported = [
        "Unsupported JPEG data precision",
        "Unsupported marker",
        "Arithmetic",
    ];
    if unsupported.iter().any(|u| msg.contains(u)) {
        return JpegFailure::unsupported(msg);
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

/// PNG row by row: the image decodes once every row is in, whatever follows (a missing IEND,
/// a stream cut after the last row, trailing bytes, a bad checksum after the rows), as in
/// browsers; a row that is missing or fails to decode refuses it.
fn decode_png(src: &[u8], header: &Header) -> Result<Decoded, PipelineError> {
    let bytes = header.pixels().saturating_mul(8).saturating_add(1 << 20);
    let limits = png::Limits {
        bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(src), limits);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(from_png_error)?;
    let info = reader.info();
    let (width, height, interlaced) = (info.width, info.height, info.interlaced);
    let (color, _) = reader.output_color_type();
    let channels = color.samples();
    let line = reader
        .output_line_size(width)
        .ok_or(PipelineError::DecoderLimit)?;
    let mut image = vec![0u8; line * height as usize];
    let mut row = vec![0u8; line];
    let expected = png_rows(width, height, interlaced);
    let bits = u8::try_from(channels * 8).unwrap_or(32);
    let mut y = 0usize;
    for _ in 0..expected {
        match reader.read_row(&mut row) {
            Ok(Some(png::InterlaceInfo::Adam7(pass))) => {
                png::expand_interlaced_row(&mut image, line, &row, &pass, bits);
            }
            Ok(Some(png::InterlaceInfo::Null(_))) => {
                if let Some(dst) = image.get_mut(y * line..(y + 1) * line) {
                    dst.copy_from_slice(&row[..line]);
                }
                y += 1;
            }
            Ok(None) => return Err(PipelineError::Truncated),
            Err(e) => return Err(from_png_error(e)),
        }
    }
    // Every row is in: what follows them only decides whether the file is whole.
    let whole = reader.finish().is_ok();
    let raster = match color {
        png::ColorType::Rgb => Raster {
            data: image,
            width,
            height,
            alpha: false,
        },
        png::ColorType::Rgba => Raster {
            data: image,
            width,
            height,
            alpha: true,
        },
        png::ColorType::Grayscale => Raster {
            data: image.iter().flat_map(|&g| [g, g, g]).collect(),
            width,
            height,
            alpha: false,
        },
        // Gray + alpha; indexed is expanded to RGB(A) by the transformations above.
        _ => Raster {
            data: image
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
            width,
            height,
            alpha: true,
        },
    };
    Ok(Decoded { raster, whole })
}

/// Rows the png crate yields for an image: one per line, or one per line of each Adam7 pass.
fn png_rows(width: u32, height: u32, interlaced: bool) -> u32 {
    if !interlaced {
        return height;
    }
    // (x0, y0, dx, dy) of the seven passes.
    const PASSES: [(u32, u32, u32, u32); 7] = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    PASSES
        .iter()
        .filter(|(x0, ..)| width > *x0)
        .map(|(_, y0, _, dy)| height.saturating_sub(*y0).div_ceil(*dy))
        .sum()
}

fn from_png_error(e: png::DecodingError) -> PipelineError {
    match e {
        png::DecodingError::LimitsExceeded => PipelineError::DecoderLimit,
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            PipelineError::Truncated
        }
        other => {
            tracing::debug!(error = %other, "PNG rejected");
            PipelineError::Corrupt("undecodable PNG data")
        }
    }
}

/// WebP through libwebp, the decoder of every Chromium-based browser: what it refuses is refused.
fn decode_webp(src: &[u8]) -> Result<Raster, PipelineError> {
    let image = webp::Decoder::new(src)
        .decode()
        .ok_or(PipelineError::Corrupt("undecodable WebP data"))?;
    let alpha = image.is_alpha();
    Ok(Raster {
        width: image.width(),
        height: image.height(),
        data: image.to_vec(),
        alpha,
    })
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
