//! EXIF orientation: read from the container, applied to decoded pixels.

use std::io::Cursor;

use super::raster::Raster;
use super::sniff::SourceFormat;

/// What the source's metadata says about how to show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// EXIF orientation 1..=8 (1 = as stored).
    pub orientation: u8,
    /// Any EXIF block at all (something to strip).
    pub has_exif: bool,
}

impl Metadata {
    pub const NONE: Metadata = Metadata {
        orientation: 1,
        has_exif: false,
    };

    /// Orientations 5..=8 swap width and height.
    pub fn transposes(self) -> bool {
        self.orientation >= 5
    }
}

/// Reads EXIF from JPEG, PNG and WebP containers; anything unreadable counts as no EXIF.
pub fn read_metadata(src: &[u8], format: SourceFormat) -> Metadata {
    if !matches!(
        format,
        SourceFormat::Jpeg | SourceFormat::Png | SourceFormat::Webp
    ) {
        return Metadata::NONE;
    }
    // In a JPEG the EXIF block sits before the first scan; the reader need not see the rest.
    let src = match format {
        SourceFormat::Jpeg => &src[..super::sniff::jpeg_header_len(src)],
        _ => src,
    };
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(src)) else {
        return Metadata::NONE;
    };
    let orientation = exif
        .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .map_or(1, |o| o as u8);
    Metadata {
        orientation,
        has_exif: true,
    }
}

/// Rotates/flips `raster` so that it displays upright for the given EXIF orientation.
pub fn apply(raster: Raster, orientation: u8) -> Raster {
    if !(2..=8).contains(&orientation) {
        return raster;
    }
    let (w, h) = (raster.width as usize, raster.height as usize);
    let (ow, oh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let data = if raster.alpha {
        remap::<4>(&raster.data, w, h, orientation)
    } else {
        remap::<3>(&raster.data, w, h, orientation)
    };
    Raster {
        data,
        width: ow as u32,
        height: oh as u32,
        alpha: raster.alpha,
    }
}

/// Writes the output in order, walking the source with a fixed step per output column and row;
/// `C` bytes per pixel as a constant lets each copy be one move.
fn remap<const C: usize>(src: &[u8], w: usize, h: usize, orientation: u8) -> Vec<u8> {
    let (wi, hi) = (w as isize, h as isize);
    let last_col = wi - 1;
    let last_row = (hi - 1) * wi;
    // Source pixel index of display (0, 0), and its change per display column and per row.
    let (base, step_x, step_y) = match orientation {
        2 => (last_col, -1, wi),
        3 => (last_col + last_row, -1, -wi),
        4 => (last_row, 1, -wi),
        5 => (0, wi, 1),
        6 => (last_row, -wi, 1),
        7 => (last_col + last_row, -wi, -1),
        8 => (last_col, wi, -1),
        _ => (0, 1, wi),
    };
    let (ow, oh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let mut out = Vec::with_capacity(src.len());
    for y in 0..oh as isize {
        let mut at = base + y * step_y;
        for _ in 0..ow {
            let i = at as usize * C;
            out.extend_from_slice(&src[i..i + C]);
            at += step_x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(w: u32, h: u32) -> Raster {
        Raster {
            data: (0..w * h * 3).map(|v| (v / 3) as u8).collect(),
            width: w,
            height: h,
            alpha: false,
        }
    }

    fn at(r: &Raster, x: usize, y: usize) -> u8 {
        r.data[(y * r.width as usize + x) * 3]
    }

    #[test]
    fn each_orientation_moves_the_stored_origin_where_exif_says() {
        // Stored 3x2, pixel value = index; stored (0,0) is 0.
        let expect_origin = [
            (2, (2, 0)),
            (3, (2, 1)),
            (4, (0, 1)),
            (5, (0, 0)),
            (6, (1, 0)),
            (7, (1, 2)),
            (8, (0, 2)),
        ];
        for (o, (x, y)) in expect_origin {
            let r = apply(raster(3, 2), o);
            let dims = if o >= 5 { (2, 3) } else { (3, 2) };
            assert_eq!((r.width, r.height), dims, "orientation {o}");
            assert_eq!(at(&r, x, y), 0, "orientation {o}");
        }
    }
}
