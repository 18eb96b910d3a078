//! Image pipeline: per-stage and whole-job times, against an `image`-crate-only pipeline
//! (decode everything, Lanczos3 resize, 4:4:4 JPEG) measured in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use fast_image_resize::Resizer;
use imgrelay::internals::stages::{decode, encode, orient, resize, sniff};
use imgrelay::pipeline::{self, negotiate, Job, Limits};
use imgrelay::urls::{Format, Options};

struct Case {
    name: &'static str,
    file: &'static str,
    width: u32,
    height: u32,
}

const CASES: [Case; 3] = [
    Case {
        name: "640x422->320w",
        file: "photo-640x422.jpg",
        width: 320,
        height: 0,
    },
    Case {
        name: "1280x960->640x480",
        file: "photo-1280x960.jpg",
        width: 640,
        height: 480,
    },
    Case {
        name: "4000x3000->640x480",
        file: "photo-4000x3000.jpg",
        width: 640,
        height: 480,
    },
];

const QUALITY: u8 = 80;
const PREFERENCE: [Format; 2] = [Format::Jpeg, Format::Png];
const LIMITS: Limits = Limits {
    max_src_pixels: 50_000_000,
    max_output_pixels: 16_000_000,
    max_animation_pixels: 100_000_000,
    max_jpeg_scans: 100,
};

fn read(file: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/images/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run_pipeline(src: &[u8], options: &Options) -> usize {
    let job = Job {
        options,
        accepted: negotiate(None, &PREFERENCE, None),
        preference: &PREFERENCE,
        default_quality: QUALITY,
        limits: LIMITS,
        allow_svg: false,
    };
    pipeline::transform(src, &job)
        .expect("transform")
        .bytes
        .len()
}

/// What a straightforward `image`-crate service does: full decode, Lanczos3, default JPEG.
fn run_image_only(src: &[u8], width: u32, height: u32) -> usize {
    let img = image::load_from_memory(src).expect("decode");
    let (w, h) = if height == 0 {
        (width, u32::MAX)
    } else {
        (width, height)
    };
    let resized = img.resize(w, h, image::imageops::FilterType::Lanczos3);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&resized.to_rgb8())
        .expect("encode");
    out.len()
}

fn stages(c: &mut Criterion) {
    for case in &CASES {
        let src = read(case.file);
        let mut group = c.benchmark_group(format!("stages/{}", case.name));
        group.bench_function("sniff+header", |b| {
            b.iter(|| {
                let header = sniff::sniff(black_box(&src)).expect("sniff");
                let meta = orient::read_metadata(&src, header.format);
                black_box((header, meta))
            })
        });
        let header = sniff::sniff(&src).expect("sniff");
        let plan = resize::Plan::new(
            header.width,
            header.height,
            (case.width, case.height),
            false,
            LIMITS.max_output_pixels,
        );
        let min = plan.min_source_size(header.width, header.height);
        group.bench_function("decode", |b| {
            b.iter(|| {
                decode::decode(black_box(&src), &header, min, &LIMITS)
                    .expect("decode")
                    .raster
            })
        });
        let decoded = decode::decode(&src, &header, min, &LIMITS)
            .expect("decode")
            .raster;
        let mut resizer = Resizer::new();
        group.bench_function("resize", |b| {
            b.iter_batched(
                || decoded.clone(),
                |raster| {
                    resize::resize(&mut resizer, raster, &plan, header.width, header.height)
                        .expect("resize")
                },
                BatchSize::LargeInput,
            )
        });
        let resized = resize::resize(
            &mut resizer,
            decoded.clone(),
            &plan,
            header.width,
            header.height,
        )
        .expect("resize");
        group.bench_function("orient(6)", |b| {
            b.iter_batched(
                || resized.clone(),
                |raster| orient::apply(raster, 6),
                BatchSize::LargeInput,
            )
        });
        group.bench_function("encode-jpeg", |b| {
            b.iter(|| {
                encode::encode(
                    black_box(&resized),
                    Format::Jpeg,
                    encode::Encoding {
                        quality: QUALITY,
                        keep_detail: false,
                    },
                )
                .expect("encode")
            })
        });
        group.finish();
    }
}

fn jobs(c: &mut Criterion) {
    let mut group = c.benchmark_group("job");
    group.sample_size(20);
    for case in &CASES {
        let src = read(case.file);
        let options = Options::sized(case.width, case.height);
        group.bench_function(format!("imgrelay/{}", case.name), |b| {
            b.iter(|| run_pipeline(black_box(&src), &options))
        });
        group.bench_function(format!("image-only/{}", case.name), |b| {
            b.iter(|| run_image_only(black_box(&src), case.width, case.height))
        });
    }
    group.finish();
}

/// Median wall time of `f`, run for at least `budget` and at least 5 times.
fn median(budget: Duration, mut f: impl FnMut() -> usize) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || start.elapsed() < budget {
        let t = Instant::now();
        black_box(f());
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// The headline table, from its own interleaved measurements so both pipelines see the same
/// machine load.
fn summary() {
    let budget = Duration::from_millis(1500);
    println!();
    println!(
        "{:<22} {:>12} {:>14} {:>8}",
        "job (1 thread)", "imgrelay ms", "image-only ms", "ratio"
    );
    for case in &CASES {
        let src = read(case.file);
        let options = Options::sized(case.width, case.height);
        let ours = median(budget, || run_pipeline(&src, &options));
        let base = median(budget, || run_image_only(&src, case.width, case.height));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<22} {:>12.2} {:>14.2} {:>7.1}x",
            case.name,
            ms(ours),
            ms(base),
            ms(base) / ms(ours)
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    stages(&mut c);
    jobs(&mut c);
    c.final_summary();
    // `cargo test --all-targets` runs benches once as smoke tests, without `--bench`.
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}
