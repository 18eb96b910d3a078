//! AVIF stills through libdav1d (cargo feature `avif`; needs the system library, 1.0 to 1.2).

use avif_parse::AvifData;
use dav1d::{PixelLayout, PlanarImageComponent as Component};

use super::raster::Raster;
use super::sniff::Header;
use super::PipelineError;

/// How YUV samples map to RGB, from the container's `nclx` colour box.
#[derive(Debug, Clone, Copy)]
struct ColourInfo {
    matrix: u16,
    full_range: bool,
}

pub(super) fn decode(src: &[u8], header: &Header) -> Result<Raster, PipelineError> {
    let data: AvifData = avif_parse::read_avif(&mut std::io::Cursor::new(src)).map_err(|e| {
        tracing::debug!(error = ?e, "AVIF container rejected");
        PipelineError::Corrupt("undecodable AVIF container")
    })?;
    let colour = colour_info(src);
    let frame_limit = u32::try_from(header.pixels()).unwrap_or(u32::MAX);
    let picture = decode_av1(data.primary_item.to_vec(), frame_limit)?;
    let (width, height) = (picture.width(), picture.height());
    let mut rgb = yuv_to_rgb(&picture, colour);
    let Some(alpha_item) = data.alpha_item else {
        return Ok(Raster {
            data: rgb,
            width,
            height,
            alpha: false,
        });
    };
    let alpha = decode_av1(alpha_item.to_vec(), frame_limit)?;
    if (alpha.width(), alpha.height()) != (width, height) {
        return Err(PipelineError::Corrupt("AVIF alpha plane size differs"));
    }
    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    let a_plane = Plane::of(&alpha, Component::Y);
    for y in 0..height as usize {
        for x in 0..width as usize {
            let i = (y * width as usize + x) * 3;
            let a = a_plane.sample8(x, y);
            let px = &mut rgb[i..i + 3];
            if data.premultiplied_alpha && a > 0 {
                for v in px.iter_mut() {
                    *v = ((u32::from(*v) * 255 + u32::from(a) / 2) / u32::from(a)).min(255) as u8;
                }
            }
            rgba.extend_from_slice(px);
            rgba.push(a);
        }
    }
    Ok(Raster {
        data: rgba,
        width,
        height,
        alpha: true,
    })
}

fn decode_av1(obus: Vec<u8>, frame_limit: u32) -> Result<dav1d::Picture, PipelineError> {
    let failed = |e: dav1d::Error| {
        tracing::debug!(error = ?e, "AV1 payload rejected");
        PipelineError::Corrupt("undecodable AV1 data")
    };
    let mut settings = dav1d::Settings::new();
    // One picture, decoded on the caller's worker thread.
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    settings.set_frame_size_limit(frame_limit);
    let mut decoder = dav1d::Decoder::with_settings(&settings)
        .map_err(|e| PipelineError::Internal(format!("dav1d: {e:?}")))?;
    match decoder.send_data(obus, None, None, None) {
        Ok(()) | Err(dav1d::Error::Again) => {}
        Err(e) => return Err(failed(e)),
    }
    for _ in 0..16 {
        match decoder.get_picture() {
            Ok(picture) => return Ok(picture),
            Err(dav1d::Error::Again) => match decoder.send_pending_data() {
                Ok(()) | Err(dav1d::Error::Again) => {}
                Err(e) => return Err(failed(e)),
            },
            Err(e) => return Err(failed(e)),
        }
    }
    Err(PipelineError::Corrupt("AV1 data holds no picture"))
}

/// Reads matrix coefficients and range from the first `colr` box of type `nclx`; without one,
/// BT.601 full range, as libavif assumes.
fn colour_info(src: &[u8]) -> ColourInfo {
    let fallback = ColourInfo {
        matrix: 6,
        full_range: true,
    };
    let Some(at) = memchr::memmem::find(src, b"colrnclx") else {
        return fallback;
    };
    let body = &src[at + 8..];
    match (body.get(4..6), body.get(6)) {
        (Some(m), Some(&flags)) => ColourInfo {
            matrix: u16::from_be_bytes([m[0], m[1]]),
            full_range: flags & 0x80 != 0,
        },
        _ => fallback,
    }
}

/// One plane of a picture with its geometry, read as 8-bit samples.
struct Plane {
    data: dav1d::Plane,
    stride: usize,
    high_depth: bool,
    shift: u32,
    rows: usize,
}

impl Plane {
    fn of(picture: &dav1d::Picture, component: Component) -> Plane {
        let (stride, rows) = picture.plane_data_geometry(component);
        let depth = picture.bit_depth() as u32;
        Plane {
            data: picture.plane(component),
            stride: stride as usize,
            high_depth: depth > 8,
            shift: depth.saturating_sub(8),
            rows: rows as usize,
        }
    }

    /// The sample at (x, y) at its own bit depth; out-of-plane reads clamp to the edge.
    fn sample(&self, x: usize, y: usize) -> u32 {
        let y = y.min(self.rows.saturating_sub(1));
        if self.high_depth {
            let at = y * self.stride + x * 2;
            self.data
                .get(at..at + 2)
                .map_or(0, |s| u32::from(u16::from_le_bytes([s[0], s[1]])))
        } else {
            self.data
                .get(y * self.stride + x)
                .map_or(0, |&v| u32::from(v))
        }
    }

    fn sample8(&self, x: usize, y: usize) -> u8 {
        (self.sample(x, y) >> self.shift).min(255) as u8
    }
}

fn yuv_to_rgb(picture: &dav1d::Picture, colour: ColourInfo) -> Vec<u8> {
    let (width, height) = (picture.width() as usize, picture.height() as usize);
    let layout = picture.pixel_layout();
    let (sx, sy) = match layout {
        PixelLayout::I420 => (1, 1),
        PixelLayout::I422 => (1, 0),
        PixelLayout::I444 | PixelLayout::I400 => (0, 0),
    };
    let max = f32::from(((1u32 << picture.bit_depth()) - 1) as u16);
    let scale = max / 255.0;
    let (kr, kb) = match colour.matrix {
        1 => (0.2126, 0.0722),
        9 | 10 => (0.2627, 0.0593),
        _ => (0.299, 0.114),
    };
    let kg = 1.0 - kr - kb;
    let luma = Plane::of(picture, Component::Y);
    let chroma = (layout != PixelLayout::I400).then(|| {
        (
            Plane::of(picture, Component::U),
            Plane::of(picture, Component::V),
        )
    });
    let norm_y = |v: u32| {
        let v = v as f32;
        if colour.full_range {
            v / max
        } else {
            (v - 16.0 * scale) / (219.0 * scale)
        }
    };
    let norm_c = |v: u32| {
        let v = v as f32;
        if colour.full_range {
            v / max - 0.5
        } else {
            (v - 128.0 * scale) / (224.0 * scale)
        }
    };
    let to8 = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let l = norm_y(luma.sample(x, y));
            let Some((u, v)) = &chroma else {
                out.extend_from_slice(&[to8(l); 3]);
                continue;
            };
            let (cx, cy) = (x >> sx, y >> sy);
            let (cb, cr) = (norm_c(u.sample(cx, cy)), norm_c(v.sample(cx, cy)));
            if colour.matrix == 0 {
                // Identity matrix: the planes are G, B, R.
                out.extend_from_slice(&[to8(cr + 0.5), to8(l), to8(cb + 0.5)]);
                continue;
            }
            let r = l + (2.0 - 2.0 * kr) * cr;
            let b = l + (2.0 - 2.0 * kb) * cb;
            let g = (l - kr * r - kb * b) / kg;
            out.extend_from_slice(&[to8(r), to8(g), to8(b)]);
        }
    }
    out
}
