//! `pipeline::transform` over every image of the corpus, judged by the manifest.

use std::path::PathBuf;

use image::AnimationDecoder;
use imgrelay::pipeline::{self, negotiate, FormatSet, Job, Limits, Output, PipelineError};
use imgrelay::urls::{Format, Options};
use serde_json::Value;

const PREFERENCE: [Format; 3] = [Format::Webp, Format::Jpeg, Format::Png];
const LIMITS: Limits = Limits {
    max_src_pixels: 50_000_000,
    max_output_pixels: 16_000_000,
    max_animation_pixels: 100_000_000,
    max_jpeg_scans: 100,
};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn manifest_images() -> Vec<Value> {
    let text = std::fs::read_to_string(data_dir().join("manifest.json")).expect("manifest");
    let manifest: Value = serde_json::from_str(&text).expect("manifest JSON");
    manifest["images"]
        .as_array()
        .expect("images[]")
        .iter()
        .filter(|i| !i["on_demand"].as_bool().unwrap_or(false))
        .cloned()
        .collect()
}

fn image_named(name: &str) -> Value {
    manifest_images()
        .into_iter()
        .find(|i| i["file"] == name)
        .unwrap_or_else(|| panic!("{name} not in manifest"))
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(data_dir().join("images").join(file)).expect("image file")
}

fn run(src: &[u8], options: &Options, accepted: FormatSet) -> Result<Output, PipelineError> {
    let job = Job {
        options,
        accepted,
        preference: &PREFERENCE,
        default_quality: 80,
        limits: LIMITS,
        allow_svg: false,
    };
    pipeline::transform(src, &job)
}

fn accept(header: &str) -> FormatSet {
    negotiate(
        Some(header),
        &[Format::Avif, Format::Webp, Format::Jpeg, Format::Png],
        None,
    )
}

fn jpeg_png() -> FormatSet {
    accept("image/png,image/*;q=0.8")
}

fn webp_too() -> FormatSet {
    accept("image/webp,image/*")
}

fn dims(v: &Value) -> (u32, u32) {
    let n = |k: &str| v[k].as_u64().expect(k) as u32;
    (n("display_width"), n("display_height"))
}

fn decode_output(out: &Output) -> image::DynamicImage {
    image::load_from_memory(&out.bytes)
        .unwrap_or_else(|e| panic!("output ({}) does not decode: {e}", out.mime))
}

/// Output size fits the box and keeps the display aspect ratio within a pixel.
fn assert_fits(name: &str, out: &Output, display: (u32, u32), bw: u32, bh: u32) {
    let (w, h) = (out.width, out.height);
    assert!(
        w <= bw.max(1) && h <= bh.max(1),
        "{name}: {w}x{h} not inside {bw}x{bh}"
    );
    assert!(
        w <= display.0 && h <= display.1,
        "{name}: upscaled to {w}x{h}"
    );
    let expect_h = f64::from(w) * f64::from(display.1) / f64::from(display.0);
    assert!(
        (f64::from(h) - expect_h).abs() <= 1.0,
        "{name}: {w}x{h} has the wrong aspect"
    );
}

#[test]
fn every_ok_image_comes_back_decodable_and_inside_the_box() {
    let mut checked = 0;
    for img in manifest_images() {
        if img["expected"] != "ok" || img["format"] == "avif" {
            continue;
        }
        let name = img["file"].as_str().expect("file");
        let src = read(name);
        let display = dims(&img);
        for (bw, bh) in [(160, 160), (320, 240), (display.0 / 2, 0)] {
            for accepted in [jpeg_png(), webp_too()] {
                let options = Options::sized(bw, bh);
                let out = run(&src, &options, accepted)
                    .unwrap_or_else(|e| panic!("{name} {bw}x{bh}: {e}"));
                let decoded = decode_output(&out);
                assert_eq!(
                    (decoded.width(), decoded.height()),
                    (out.width, out.height),
                    "{name}: reported size differs from the encoded one"
                );
                let bh_eff = if bh == 0 { u32::MAX } else { bh };
                assert_fits(name, &out, display, bw.max(1), bh_eff);
                if !accepted.contains(Format::Webp) {
                    assert_ne!(
                        out.mime, "image/webp",
                        "{name}: WebP to a client without it"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} transforms checked");
}

#[test]
fn every_reject_is_refused_with_its_status() {
    for img in manifest_images() {
        if img["expected"] != "reject" {
            continue;
        }
        let name = img["file"].as_str().expect("file");
        let want = match img["reject_reason"].as_str().expect("reason") {
            "too-many-pixels" => 413,
            _ => 415,
        };
        for options in [Options::sized(320, 240), Options::default()] {
            match run(&read(name), &options, webp_too()) {
                Ok(out) => panic!(
                    "{name} was served as {} ({} bytes)",
                    out.mime,
                    out.bytes.len()
                ),
                Err(e) => assert_eq!(status(&e), want, "{name}: {e}"),
            }
        }
    }
}

#[test]
fn exif_orientation_is_applied_for_every_orientation() {
    for n in 1..=8 {
        let name = format!("orient-{n}.jpg");
        let img = image_named(&name);
        let checks = &img["checks"]["after_orientation"];
        let (cw, ch) = (
            checks["width"].as_f64().expect("w"),
            checks["height"].as_f64().expect("h"),
        );
        let tolerance = checks["tolerance"].as_i64().expect("tolerance");
        for (bw, bh) in [(0, 0), (180, 180)] {
            let out = run(&read(&name), &Options::sized(bw, bh), jpeg_png()).expect(&name);
            assert_eq!(out.mime, "image/jpeg");
            let decoded = decode_output(&out).into_rgb8();
            let (sx, sy) = (f64::from(out.width) / cw, f64::from(out.height) / ch);
            for s in checks["samples"].as_array().expect("samples") {
                let x = (s["x"].as_f64().expect("x") * sx) as u32;
                let y = (s["y"].as_f64().expect("y") * sy) as u32;
                let got = decoded
                    .get_pixel(x.min(out.width - 1), y.min(out.height - 1))
                    .0;
                for (c, want) in s["rgb"].as_array().expect("rgb").iter().enumerate() {
                    let want = want.as_i64().expect("channel");
                    assert!(
                        (i64::from(got[c]) - want).abs() <= tolerance,
                        "{name} at {bw}x{bh}: {} is {got:?}, want {}",
                        s["name"],
                        s["rgb"]
                    );
                }
            }
        }
    }
}

#[test]
fn transparency_survives_in_formats_that_have_it() {
    for img in manifest_images() {
        let Some(pixel) = img["checks"].get("transparent_pixel") else {
            continue;
        };
        let name = img["file"].as_str().expect("file");
        let display = dims(&img);
        for accepted in [jpeg_png(), webp_too()] {
            let out = run(&read(name), &Options::default(), accepted).expect(name);
            assert_ne!(out.mime, "image/jpeg", "{name}: transparency sent as JPEG");
            let decoded = decode_output(&out).into_rgba8();
            let x = pixel["x"].as_u64().expect("x") as u32 * out.width / display.0;
            let y = pixel["y"].as_u64().expect("y") as u32 * out.height / display.1;
            let alpha = decoded.get_pixel(x, y).0[3];
            let want = pixel["alpha"].as_u64().expect("alpha") as i64;
            assert!(
                (i64::from(alpha) - want).abs() <= 8,
                "{name} ({}): alpha {alpha}",
                out.mime
            );
        }
        // Downscaled, the transparent area is still transparent (premultiplied filtering).
        let out = run(&read(name), &Options::sized(display.0 / 2, 0), jpeg_png()).expect(name);
        assert_eq!(out.mime, "image/png", "{name}");
        let decoded = decode_output(&out).into_rgba8();
        let x = pixel["x"].as_u64().expect("x") as u32 * out.width / display.0;
        let y = pixel["y"].as_u64().expect("y") as u32 * out.height / display.1;
        assert!(
            decoded.get_pixel(x, y).0[3] <= 8,
            "{name}: downscaled alpha"
        );
    }
}

/// Frame count and total duration in milliseconds.
fn frames_of(bytes: &[u8], mime: &str) -> (usize, u32) {
    let cursor = std::io::Cursor::new(bytes);
    let frames = match mime {
        "image/gif" => image::codecs::gif::GifDecoder::new(cursor)
            .expect("GIF")
            .into_frames(),
        "image/webp" => image::codecs::webp::WebPDecoder::new(cursor)
            .expect("WebP")
            .into_frames(),
        other => panic!("animation came back as {other}"),
    };
    frames.fold((0, 0), |(n, total), f| {
        let (num, den) = f.expect("frame").delay().numer_denom_ms();
        (n + 1, total + num / den.max(1))
    })
}

#[test]
fn animations_keep_every_frame() {
    for img in manifest_images() {
        if img["animated"] != true {
            continue;
        }
        let name = img["file"].as_str().expect("file");
        let frames = img["frames"].as_u64().expect("frames") as usize;
        let src = read(name);
        let display = dims(&img);
        // Fits already: served as it is when the format is acceptable.
        let out = run(&src, &Options::default(), webp_too()).expect(name);
        assert!(out.passthrough, "{name}");
        assert_eq!(out.bytes.as_ref(), src.as_slice());
        // Needs resizing: every frame resized, whatever the client accepts.
        for accepted in [jpeg_png(), webp_too()] {
            let out = run(&src, &Options::sized(display.0 / 2, 0), accepted).expect(name);
            assert!(!out.passthrough);
            assert_eq!(
                (out.width, out.height),
                (display.0 / 2, display.1 / 2),
                "{name}"
            );
            let (count, duration) = frames_of(&out.bytes, out.mime);
            assert_eq!(count, frames, "{name} as {}", out.mime);
            let (_, source_duration) = frames_of(&src, img["mime"].as_str().expect("mime"));
            assert!(
                duration.abs_diff(source_duration) <= 20,
                "{name} as {}: {duration} ms, source {source_duration} ms",
                out.mime
            );
            if !accepted.contains(Format::Webp) {
                assert_eq!(out.mime, "image/gif");
            }
        }
    }
}

#[test]
fn svg_is_refused_unless_allowed_then_passed_through() {
    let src = read("script.svg");
    let options = Options::default();
    let mut job = Job {
        options: &options,
        accepted: jpeg_png(),
        preference: &PREFERENCE,
        default_quality: 80,
        limits: LIMITS,
        allow_svg: false,
    };
    let err = pipeline::transform(&src, &job).expect_err("SVG refused");
    assert!(matches!(err, PipelineError::SvgNotAllowed));
    assert_eq!(status(&err), 415);
    job.allow_svg = true;
    let out = pipeline::transform(&src, &job).expect("SVG allowed");
    assert_eq!((out.mime, out.passthrough), ("image/svg+xml", true));
    assert_eq!(out.bytes.as_ref(), src.as_slice());
}

#[cfg(feature = "avif")]
#[test]
fn avif_is_decoded_when_it_needs_resizing_or_is_not_accepted() {
    let src = read("photo-640x480.avif");
    let out = run(&src, &Options::sized(320, 240), jpeg_png()).expect("avif");
    assert_eq!((out.mime, out.width, out.height), ("image/jpeg", 320, 240));
    let ours = decode_output(&out).into_rgb8();
    // The picture has a white label with a black outline top left and a yellow blob at the
    // bottom centre: checks range (white/black reach the ends) and chroma order (yellow, not blue).
    let label = (0..120).flat_map(|x| (2..30).map(move |y| (x, y)));
    let lumas: Vec<u8> = label.map(|(x, y)| ours.get_pixel(x, y).0[1]).collect();
    assert!(lumas.iter().any(|&l| l >= 240), "no white in the label");
    assert!(lumas.iter().any(|&l| l <= 40), "no black in the label");
    let [r, g, b] = ours.get_pixel(150, 218).0;
    assert!(
        r > 170 && g > 170 && b < 130,
        "blob is {:?}, want yellow",
        [r, g, b]
    );
    // Transparency-free AVIF to a client without AVIF, at full size: decoded, not refused.
    let out = run(&src, &Options::default(), jpeg_png()).expect("full size");
    assert_eq!((out.mime, out.width, out.height), ("image/jpeg", 640, 480));
}

#[cfg(not(feature = "avif"))]
#[test]
fn avif_passes_through_when_it_fits_and_is_accepted() {
    let src = read("photo-640x480.avif");
    let out = run(
        &src,
        &Options::sized(640, 480),
        accept("image/avif,image/webp"),
    )
    .expect("avif");
    assert_eq!(
        (out.mime, out.passthrough, out.width, out.height),
        ("image/avif", true, 640, 480)
    );
    let err = run(&src, &Options::sized(320, 240), accept("image/avif")).expect_err("resize");
    assert_eq!(status(&err), 415);
    let err = run(&src, &Options::default(), jpeg_png()).expect_err("not accepted");
    assert_eq!(status(&err), 415);
}

#[test]
fn format_follows_preference_acceptance_and_force() {
    let src = read("photo-640x480.jpg");
    let out = run(&src, &Options::sized(320, 0), webp_too()).expect("webp");
    assert_eq!(out.mime, "image/webp");
    let out = run(&src, &Options::sized(320, 0), jpeg_png()).expect("jpeg");
    assert_eq!(out.mime, "image/jpeg");
    let forced = Options {
        format: Some(Format::Png),
        ..Options::sized(320, 0)
    };
    let accepted = negotiate(Some("image/webp"), &PREFERENCE, forced.format);
    let out = run(&src, &forced, accepted).expect("png");
    assert_eq!(out.mime, "image/png");
    // Real alpha never goes out as JPEG unless forced.
    let rgba = read("rgba-400x300.png");
    let out = run(&rgba, &Options::sized(200, 0), jpeg_png()).expect("png");
    assert_eq!(out.mime, "image/png");
    let forced_jpeg = Options {
        format: Some(Format::Jpeg),
        ..Options::sized(200, 0)
    };
    let out = run(&rgba, &forced_jpeg, jpeg_png()).expect("forced jpeg");
    assert_eq!(out.mime, "image/jpeg");
    decode_output(&out);
}

#[test]
fn jpeg_output_uses_420_chroma_and_the_requested_quality() {
    let src = read("photo-1280x960.jpg");
    let at = |q: u8| {
        let options = Options {
            quality: Some(q),
            ..Options::sized(640, 480)
        };
        run(&src, &options, jpeg_png()).expect("jpeg")
    };
    let (low, high) = (at(40), at(95));
    assert!(low.bytes.len() < high.bytes.len());
    let header = turbojpeg::read_header(&high.bytes).expect("header");
    assert_eq!(header.subsamp, turbojpeg::Subsamp::Sub2x2);
}

#[test]
fn cover_fills_the_box_and_dpr_multiplies_it() {
    let src = read("photo-640x480.jpg");
    let cover = Options {
        cover: true,
        ..Options::sized(200, 200)
    };
    let out = run(&src, &cover, jpeg_png()).expect("cover");
    assert_eq!((out.width, out.height), (200, 200));
    let dpr = Options {
        dpr: 2,
        ..Options::sized(160, 0)
    };
    let out = run(&src, &dpr, jpeg_png()).expect("dpr");
    assert_eq!((out.width, out.height), (320, 240));
    // Never upscaled, even with dpr.
    let big = Options {
        dpr: 4,
        ..Options::sized(640, 0)
    };
    assert_eq!(run(&src, &big, jpeg_png()).expect("big").width, 640);
}

#[test]
fn output_pixel_cap_is_never_exceeded() {
    let src = read("panorama-10000x100.jpg");
    let job_limits = Limits {
        max_output_pixels: 250_000,
        ..LIMITS
    };
    let options = Options::default();
    let job = Job {
        options: &options,
        accepted: jpeg_png(),
        preference: &PREFERENCE,
        default_quality: 80,
        limits: job_limits,
        allow_svg: false,
    };
    let out = pipeline::transform(&src, &job).expect("panorama");
    assert!(u64::from(out.width) * u64::from(out.height) <= 250_000);
    assert_eq!(out.width / out.height, 100);
}

#[test]
fn sources_needing_nothing_are_served_as_they_are() {
    // Small, already-compressed PNG that fits: re-encoding cannot beat it.
    let src = read("palette-trns-200x150.png");
    let out = run(&src, &Options::default(), jpeg_png()).expect("palette");
    assert!(out.passthrough);
    assert_eq!(out.bytes.as_ref(), src.as_slice());
    // EXIF present: re-encoded to strip it, even when it fits.
    let src = read("orient-1.jpg");
    let out = run(&src, &Options::default(), jpeg_png()).expect("orient-1");
    assert!(!out.passthrough);
    assert!(
        !out.bytes.windows(4).any(|w| w == b"Exif"),
        "EXIF left in the output"
    );
}

#[test]
fn cmyk_and_grayscale_jpegs_decode_to_the_right_colours() {
    for name in ["cmyk-640x480.jpg", "gray-640x480.jpg"] {
        let out = run(&read(name), &Options::sized(320, 240), jpeg_png()).expect(name);
        let ours = decode_output(&out).into_rgb8();
        let reference = image::load_from_memory(&read(name))
            .expect(name)
            .into_rgb8();
        let reference =
            image::imageops::resize(&reference, 320, 240, image::imageops::FilterType::Triangle);
        let diff: u64 = ours
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = diff as f64 / ours.as_raw().len() as f64;
        assert!(
            mean < 6.0,
            "{name}: mean difference {mean:.1} from the reference decoder"
        );
    }
}

#[test]
fn truncated_jpeg_is_refused_as_truncated() {
    let err = run(
        &read("truncated-60pct.jpg"),
        &Options::sized(320, 0),
        jpeg_png(),
    )
    .expect_err("truncated");
    assert!(matches!(err, PipelineError::Truncated), "{err}");
    let err = run(&read("zero-bytes.jpg"), &Options::default(), jpeg_png()).expect_err("empty");
    assert!(matches!(err, PipelineError::Empty), "{err}");
}

#[test]
fn wide_gamut_icc_profiles_are_converted_to_srgb() {
    let name = "icc-adobergb-640x480.jpg";
    let img = image_named(name);
    let checks = &img["checks"];
    let tolerance = checks["tolerance"].as_i64().expect("tolerance");
    let out = run(&read(name), &Options::default(), jpeg_png()).expect(name);
    assert!(!out.passthrough);
    let decoded = decode_output(&out).into_rgb8();
    for s in checks["icc_samples"].as_array().expect("samples") {
        let (x, y) = (
            s["x"].as_u64().expect("x") as u32,
            s["y"].as_u64().expect("y") as u32,
        );
        let got = decoded.get_pixel(x, y).0;
        for (c, want) in s["srgb_rgb"].as_array().expect("srgb").iter().enumerate() {
            let want = want.as_i64().expect("channel");
            assert!(
                (i64::from(got[c]) - want).abs() <= tolerance,
                "at ({x},{y}): {got:?}, want sRGB {}",
                s["srgb_rgb"]
            );
        }
    }
}

#[test]
fn images_too_wide_for_webp_fall_back_to_a_format_that_holds_them() {
    // 20000x10 PNG: fine for the pixel caps, beyond WebP's 16383-pixel sides.
    let mut png = Vec::new();
    let pixels = vec![90u8; 20_000 * 10 * 3];
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &pixels,
        20_000,
        10,
        image::ExtendedColorType::Rgb8,
    )
    .expect("png");
    let options = Options {
        format: Some(Format::Webp),
        ..Options::default()
    };
    let out = run(&png, &options, webp_too()).expect("wide");
    assert_ne!(out.mime, "image/webp");
    assert_eq!((out.width, out.height), (20_000, 10));
    decode_output(&out);
}

#[test]
fn truncated_sources_of_every_format_are_refused() {
    for img in manifest_images() {
        if img["expected"] != "ok" || img["format"] == "avif" {
            continue;
        }
        let name = img["file"].as_str().expect("file");
        let src = read(name);
        let cut = &src[..src.len() * 6 / 10];
        match run(cut, &Options::sized(100, 100), jpeg_png()) {
            Err(e) => assert_eq!(status(&e), 415, "{name}: {e}"),
            Ok(out) => panic!("{name} cut to 60% was served as {}", out.mime),
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Deterministic damage spread over each file: every outcome is fine except a panic.
    for img in manifest_images() {
        let name = img["file"].as_str().expect("file");
        let src = read(name);
        if src.len() < 64 {
            continue;
        }
        for step in 1..24 {
            let mut damaged = src.clone();
            let at = src.len() * step / 24;
            for (k, b) in damaged[at..].iter_mut().take(16).enumerate() {
                *b ^= 0x5A ^ (k as u8).wrapping_mul(37);
            }
            if let Err(e) = run(&damaged, &Options::sized(120, 90), webp_too()) {
                assert_ne!(status(&e), 500, "{name} damaged at {at}: {e}");
            }
        }
    }
}

#[test]
fn cover_crops_every_kind_of_source_to_the_exact_box() {
    for name in [
        "photo-4000x3000.jpg",
        "orient-6.jpg",
        "orient-3.jpg",
        "rgba-400x300.png",
        "animated-160x120.gif",
    ] {
        for (bw, bh) in [(60, 100), (100, 60), (64, 64)] {
            let options = Options {
                cover: true,
                ..Options::sized(bw, bh)
            };
            let out =
                run(&read(name), &options, jpeg_png()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let decoded = decode_output(&out);
            assert_eq!(
                (decoded.width(), decoded.height()),
                (bw, bh),
                "{name} {bw}x{bh}"
            );
        }
    }
}

#[test]
fn cover_never_upscales_to_fill_a_box_taller_than_the_source() {
    let options = Options {
        cover: true,
        ..Options::sized(100, 200)
    };
    let out = run(&read("panorama-10000x100.jpg"), &options, jpeg_png()).expect("panorama");
    assert_eq!((out.width, out.height), (100, 100));
}

/// The HTTP status the image route answers for a pipeline error.
fn status(e: &PipelineError) -> u16 {
    imgrelay::internals::image_status(e).as_u16()
}
