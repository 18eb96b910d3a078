//! The generator of tests/data/images/gen-*: one file per decoding class the image route must
//! get right, each built from scratch with the encoders this crate links, then damaged on
//! purpose. `tests/decoding.rs` checks that the committed files are exactly what this builds
//! (`IMGRELAY_REGENERATE=1 cargo test --test decoding` rewrites them).

use std::io::Cursor;

/// (file name, bytes) of every generated file.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    out.push(("gen-scan-bomb-7000x7000.jpg", scan_bomb(7000, 7000, 300)));
    out.push(("gen-many-scans-1000x1000.jpg", scan_bomb(1000, 1000, 150)));
    let photo = jpeg(&gradient(1800, 1200), 1800, 1200, false);
    out.push((
        "gen-stray-before-dht-1800x1200.jpg",
        insert_before_marker(&photo, 0xC4, b"\x00\x1f\x7e"),
    ));
    out.push((
        "gen-stray-before-sos-1800x1200.jpg",
        insert_before_marker(&photo, 0xDA, b"\x55\xaa"),
    ));
    let small = jpeg(&gradient(640, 480), 640, 480, false);
    out.push(("gen-bad-sos-params-640x480.jpg", odd_sos_parameters(&small)));
    out.push((
        "gen-cut-mid-scan-640x480.jpg",
        small[..small.len() * 2 / 3].to_vec(),
    ));

    let plain = png(&gradient(300, 200), 300, 200);
    // The png crate writes no interlaced files: the corpus's Adam7 PNG is cut instead.
    let interlaced = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/images/interlaced-300x200.png"),
    )
    .unwrap();
    let iend = 12;
    out.push((
        "gen-no-iend-300x200.png",
        plain[..plain.len() - iend].to_vec(),
    ));
    out.push((
        "gen-interlaced-no-iend-300x200.png",
        interlaced[..interlaced.len() - iend].to_vec(),
    ));
    // The zlib checksum, the chunk CRC and IEND are gone; every row's data is still there.
    out.push((
        "gen-cut-after-rows-300x200.png",
        plain[..plain.len() - iend - 8].to_vec(),
    ));
    let mut garbage = plain.clone();
    garbage.extend(std::iter::repeat_n(0xA5u8, 64));
    out.push(("gen-trailing-garbage-300x200.png", garbage));
    let mut bad_crc = plain.clone();
    let crc_at = plain.len() - iend - 1;
    bad_crc[crc_at] ^= 0xFF;
    out.push(("gen-bad-crc-after-rows-300x200.png", bad_crc));
    out.push((
        "gen-cut-mid-rows-300x200.png",
        plain[..plain.len() / 2].to_vec(),
    ));

    out.push(("gen-corrupt-lossless-320x240.webp", corrupt_lossless_webp()));
    out.push((
        "gen-corrupt-frame-animated-120x90.webp",
        corrupt_animated_webp(),
    ));

    out.push(("gen-offset-frames-1000x1000.gif", offset_frames_gif()));
    out.push((
        "gen-many-frames-472x298.gif",
        many_frames_gif(472, 298, 380),
    ));
    let two = many_frames_gif(64, 48, 2);
    out.push(("gen-no-trailer-64x48.gif", two[..two.len() - 1].to_vec()));
    let mut trailing = two.clone();
    trailing.extend_from_slice(b"garbage after the trailer");
    out.push(("gen-trailing-garbage-64x48.gif", trailing));

    out.push(("gen-icon-8x8-palette.png", palette_png(8, 8, icon_index)));
    out.push((
        "gen-checker-64x64-palette.png",
        palette_png(64, 64, |x, y| ((x + y) % 2) as u8),
    ));
    out
}

/// A smooth RGB picture: gradients in each channel, so lossy codecs have something to do.
pub fn gradient(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            px.push((x * 255 / w.max(1)) as u8);
            px.push((y * 255 / h.max(1)) as u8);
            px.push(((x + y) * 127 / (w + h).max(1)) as u8);
        }
    }
    px
}

fn jpeg(rgb: &[u8], w: u32, h: u32, progressive: bool) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(85).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
    c.set_progressive(progressive).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels: rgb,
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: turbojpeg::PixelFormat::RGB,
    })
    .unwrap()
}

/// Offsets of the 0xFF of every marker of `marker` after the header's start.
fn marker_offsets(jpeg: &[u8], marker: u8) -> Vec<usize> {
    jpeg.windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == 0xFF && w[1] == marker)
        .map(|(i, _)| i)
        .collect()
}

/// `bytes` inserted right before the first `marker`: libjpeg warns of extraneous bytes.
fn insert_before_marker(jpeg: &[u8], marker: u8, bytes: &[u8]) -> Vec<u8> {
    let at = marker_offsets(jpeg, marker)[0];
    let mut out = jpeg[..at].to_vec();
    out.extend_from_slice(bytes);
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// A baseline JPEG whose scan header claims a successive-approximation bit (Al = 1): invalid
/// for a sequential JPEG, ignored with a warning.
fn odd_sos_parameters(jpeg: &[u8]) -> Vec<u8> {
    let sos = marker_offsets(jpeg, 0xDA)[0];
    let len = usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
    let mut out = jpeg.to_vec();
    // The last byte of the scan header is Ah:Al.
    out[sos + 2 + len - 1] = 0x01;
    out
}

/// A flat progressive grayscale JPEG whose last scan is repeated until it has `scans` scans:
/// each repeat costs a pass over every coefficient and adds a few bytes.
fn scan_bomb(w: u32, h: u32, scans: usize) -> Vec<u8> {
    let gray = vec![128u8; (w * h) as usize];
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(75).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::Gray).unwrap();
    c.set_progressive(true).unwrap();
    let base = c
        .compress_to_vec(turbojpeg::Image {
            pixels: gray.as_slice(),
            width: w as usize,
            pitch: w as usize,
            height: h as usize,
            format: turbojpeg::PixelFormat::GRAY,
        })
        .unwrap();
    let sos = marker_offsets(&base, 0xDA);
    let eoi = base.len() - 2;
    let last = &base[*sos.last().unwrap()..eoi];
    let mut out = base[..eoi].to_vec();
    for _ in sos.len()..scans {
        out.extend_from_slice(last);
    }
    out.extend_from_slice(&base[eoi..]);
    out
}

fn png(rgb: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(rgb).unwrap();
    }
    out
}

/// An indexed PNG with four saturated colours.
fn palette_png(w: u32, h: u32, index: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(PALETTE.concat());
        let mut writer = enc.write_header().unwrap();
        let data: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| index(x, y))
            .collect();
        writer.write_image_data(&data).unwrap();
    }
    out
}

/// Red, blue, yellow, green.
pub const PALETTE: [[u8; 3]; 4] = [[255, 0, 0], [0, 0, 255], [255, 255, 0], [0, 160, 0]];

/// A tiny icon: a yellow frame, a red cross on blue, a green dot.
fn icon_index(x: u32, y: u32) -> u8 {
    match (x, y) {
        (0 | 7, _) | (_, 0 | 7) => 2,
        (3 | 4, _) | (_, 3 | 4) => 0,
        (1, 1) => 3,
        _ => 1,
    }
}

/// A lossless WebP that libwebp refuses: bytes in the middle of its bitstream overwritten.
fn corrupt_lossless_webp() -> Vec<u8> {
    let (w, h) = (320, 240);
    let rgba: Vec<u8> = gradient(w, h)
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 200])
        .collect();
    let good = webp::Encoder::from_rgba(&rgba, w, h)
        .encode_lossless()
        .to_vec();
    assert!(webp::Decoder::new(&good).decode().is_some());
    // Try damage until libwebp refuses the file (deterministic: the first position that works).
    for at in (30..good.len() - 8).step_by(7) {
        let mut bad = good.clone();
        for b in &mut bad[at..at + 8] {
            *b ^= 0x5A;
        }
        if webp::Decoder::new(&bad).decode().is_none() {
            return bad;
        }
    }
    panic!("no damage made libwebp refuse the file");
}

/// An animated WebP of three frames, the second one's bitstream damaged so libwebp refuses it.
fn corrupt_animated_webp() -> Vec<u8> {
    let (w, h) = (120, 90);
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            gradient(w, h)
                .chunks_exact(3)
                .flat_map(|p| [p[0].wrapping_add(i * 60), p[1], p[2], 255])
                .collect()
        })
        .collect();
    let config = webp::WebPConfig::new().unwrap();
    let mut encoder = webp::AnimEncoder::new(w, h, &config);
    for (i, f) in frames.iter().enumerate() {
        encoder.add_frame(webp::AnimFrame::from_rgba(f, w, h, i as i32 * 100));
    }
    let mut out = encoder.try_encode().unwrap().to_vec();
    let anmf: Vec<usize> = out
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"ANMF")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(anmf.len(), 3);
    // Past the ANMF header (8), the frame fields (16) and the image chunk header (8).
    let start = anmf[1] + 8 + 16 + 8 + 10;
    for b in &mut out[start..start + 40] {
        *b ^= 0xC3;
    }
    out
}

fn gif(frames: Vec<image::Frame>) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 30);
        enc.set_repeat(image::codecs::gif::Repeat::Infinite)
            .unwrap();
        for f in frames {
            enc.encode_frame(f).unwrap();
        }
    }
    out
}

fn solid(w: u32, h: u32, rgba: [u8; 4]) -> image::RgbaImage {
    image::RgbaImage::from_pixel(w, h, image::Rgba(rgba))
}

/// 1000x1000, two frames, the second covering only the middle: three canvases at once.
fn offset_frames_gif() -> Vec<u8> {
    let delay = image::Delay::from_numer_denom_ms(200, 1);
    gif(vec![
        image::Frame::from_parts(solid(1000, 1000, [255, 0, 0, 255]), 0, 0, delay),
        image::Frame::from_parts(solid(500, 500, [0, 0, 255, 255]), 250, 250, delay),
    ])
}

fn many_frames_gif(w: u32, h: u32, n: u32) -> Vec<u8> {
    let delay = image::Delay::from_numer_denom_ms(40, 1);
    gif((0..n)
        .map(|i| {
            let shade = (i * 255 / n.max(1)) as u8;
            image::Frame::from_parts(solid(w, h, [shade, 64, 255 - shade, 255]), 0, 0, delay)
        })
        .collect())
}

/// Decodes `bytes` with the `image` crate (for test assertions on outputs).
pub fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap()
}
