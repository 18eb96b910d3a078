//! Publish-time probing (`imgrelay rewrite --probe`): each referenced upstream picture is
//! fetched once with the server's hardened fetcher and its header read (format, stored size,
//! EXIF orientation) without decoding pixels, so the rewriter can size what has no hint and
//! reach the picture's real width in `srcset`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use url::Url;

use crate::fetch::{FetchError, FetchSettings, Fetcher};
use crate::pipeline::decode::decode;
use crate::pipeline::{read_metadata, sniff, Header, Limits, SourceFormat};

/// Probes in flight at once, and per upstream host (a blog's pictures mostly share one host,
/// which should not see a burst from one publish).
const CONCURRENCY: usize = 8;
const PER_HOST: usize = 4;

/// What probing one upstream learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub status: ProbeStatus,
    /// `image/jpeg` …, for a picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// As shown, after EXIF orientation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// EXIF orientation 1..=8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The dominant colour, `#rrggbb`, when asked for (`--placeholder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
    /// Why a picture is broken, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeStatus {
    Ok,
    NotFound,
    Timeout,
    /// Not fetched by policy or refused by the upstream (host not allowed, private address,
    /// 401/403).
    Refused,
    NotAnImage,
    TooLarge,
    /// Any other failure: another status, no connection, a cut body.
    Unreachable,
}

impl ProbeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Ok => "ok",
            ProbeStatus::NotFound => "not-found",
            ProbeStatus::Timeout => "timeout",
            ProbeStatus::Refused => "refused",
            ProbeStatus::NotAnImage => "not-an-image",
            ProbeStatus::TooLarge => "too-large",
            ProbeStatus::Unreachable => "unreachable",
        }
    }
}

impl Probe {
    fn broken(status: ProbeStatus, detail: String) -> Probe {
        Probe {
            status,
            format: None,
            width: None,
            height: None,
            orientation: None,
            bytes: None,
            colour: None,
            detail: Some(detail),
        }
    }

    /// The size as shown, for a picture that has one (not SVG).
    pub fn size(&self) -> Option<(u32, u32)> {
        match (self.status, self.width, self.height) {
            (ProbeStatus::Ok, Some(w), Some(h)) if w > 0 && h > 0 => Some((w, h)),
            _ => None,
        }
    }

    /// Reads what a body says; with `colours`, also its dominant colour, decoded within
    /// those limits.
    fn of_body(body: &[u8], colours: Option<&Limits>) -> Probe {
        let header = match sniff(body) {
            Ok(header) => header,
            Err(e) => return Probe::broken(ProbeStatus::NotAnImage, e.to_string()),
        };
        let meta = read_metadata(body, header.format);
        let (w, h) = if meta.transposes() {
            (header.height, header.width)
        } else {
            (header.width, header.height)
        };
        let sized = header.format != SourceFormat::Svg;
        Probe {
            status: ProbeStatus::Ok,
            format: Some(header.format.mime().to_string()),
            width: sized.then_some(w),
            height: sized.then_some(h),
            orientation: Some(meta.orientation),
            bytes: Some(body.len() as u64),
            colour: colours.and_then(|limits| dominant_colour(body, &header, limits)),
            detail: None,
        }
    }

    fn of_error(e: &FetchError) -> Probe {
        let status = match e {
            FetchError::NotFound | FetchError::Status(410) => ProbeStatus::NotFound,
            FetchError::Timeout => ProbeStatus::Timeout,
            FetchError::BadUrl(_)
            | FetchError::HostNotAllowed(_)
            | FetchError::Forbidden(_)
            | FetchError::Status(401 | 403 | 451) => ProbeStatus::Refused,
            FetchError::TooLarge(_) => ProbeStatus::TooLarge,
            FetchError::Status(_)
            | FetchError::TooManyRedirects(_)
            | FetchError::Connect(_)
            | FetchError::Body(_) => ProbeStatus::Unreachable,
        };
        Probe::broken(status, crate::cause::chain(e))
    }
}

/// The dominant colour of a still picture as `#rrggbb`: the fullest cell of a histogram with
/// 4 bits per channel over a small decode (JPEG decodes at 1/8), averaged over that cell. The
/// mean of all pixels would give a muddy colour no part of the picture has.
fn dominant_colour(body: &[u8], header: &Header, limits: &Limits) -> Option<String> {
    if header.animated
        || header.format == SourceFormat::Svg
        || header.pixels() > limits.max_src_pixels
    {
        return None;
    }
    let raster = decode(body, header, (1, 1), limits).ok()?.raster;
    let channels = raster.channels();
    let mut cells = vec![(0u32, [0u64; 3]); 4096];
    for px in raster.data.chunks_exact(channels) {
        // Transparent pixels show the page, not the picture.
        if channels == 4 && px[3] < 128 {
            continue;
        }
        let cell =
            usize::from(px[0] >> 4) << 8 | usize::from(px[1] >> 4) << 4 | usize::from(px[2] >> 4);
        let (n, sum) = &mut cells[cell];
        *n += 1;
        for (s, &v) in sum.iter_mut().zip(px) {
            *s += u64::from(v);
        }
    }
    let (n, sum) = cells
        .iter()
        .max_by_key(|(n, _)| *n)
        .filter(|(n, _)| *n > 0)?;
    let n = u64::from(*n);
    Some(format!(
        "#{:02x}{:02x}{:02x}",
        sum[0] / n,
        sum[1] / n,
        sum[2] / n
    ))
}

/// How probing went as a whole.
#[derive(Debug, Default)]
pub(crate) struct ProbeRun {
    pub(crate) probes: HashMap<String, Probe>,
    /// Upstream requests made (one per picture not answered by the probe cache).
    pub(crate) requests: usize,
    pub(crate) elapsed: Duration,
}

/// Probes every URL of `upstreams` not already in `known`, with the server's fetch limits.
pub(crate) fn probe_all(
    settings: FetchSettings,
    upstreams: Vec<String>,
    known: HashMap<String, Probe>,
    colours: Option<Limits>,
) -> Result<ProbeRun, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start probing: {e}"))?;
    let started = Instant::now();
    let mut run = runtime.block_on(async move {
        let fetcher = Fetcher::new(settings);
        let all = Arc::new(Semaphore::new(CONCURRENCY));
        let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut probes = known;
        let mut requests = 0;
        for upstream in upstreams {
            if probes.contains_key(&upstream) {
                continue;
            }
            let url = match Url::parse(&upstream) {
                Ok(url) => url,
                Err(e) => {
                    let probe = Probe::broken(ProbeStatus::Refused, format!("bad URL: {e}"));
                    probes.insert(upstream, probe);
                    continue;
                }
            };
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let per_host = hosts
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(PER_HOST)))
                .clone();
            requests += 1;
            let (all, fetcher) = (all.clone(), fetcher.clone());
            tasks.spawn(async move {
                let (Ok(_host_place), Ok(_place)) =
                    (per_host.acquire_owned().await, all.acquire_owned().await)
                else {
                    return (
                        upstream,
                        Probe::broken(ProbeStatus::Unreachable, "cancelled".into()),
                    );
                };
                let probe = match fetcher.fetch(&url).await {
                    // Decoding for a colour is CPU work: off the thread that drives the fetches.
                    Ok(body) => match colours {
                        Some(limits) => tokio::task::spawn_blocking(move || {
                            Probe::of_body(&body, Some(&limits))
                        })
                        .await
                        .unwrap_or_else(|e| {
                            Probe::broken(ProbeStatus::NotAnImage, format!("decoding failed: {e}"))
                        }),
                        None => Probe::of_body(&body, None),
                    },
                    Err(e) => Probe::of_error(&e),
                };
                (upstream, probe)
            });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok((upstream, probe)) = done {
                probes.insert(upstream, probe);
            }
        }
        ProbeRun {
            probes,
            requests,
            elapsed: Duration::ZERO,
        }
    });
    run.elapsed = started.elapsed();
    Ok(run)
}

/// How a `data-size` hint compares with the picture (`--report`'s `hint` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HintAgreement {
    /// The hint is the picture's size.
    Agrees,
    /// Another size of the same shape (within 1 %).
    SameShape,
    /// Another shape: the layout the hint reserves is wrong.
    Mismatch,
}

impl HintAgreement {
    pub fn of(hint: (u32, u32), real: (u32, u32)) -> HintAgreement {
        if hint == real {
            return HintAgreement::Agrees;
        }
        let (hw, hh) = (f64::from(hint.0), f64::from(hint.1));
        let (rw, rh) = (f64::from(real.0), f64::from(real.1));
        if ((hw / hh) / (rw / rh) - 1.0).abs() <= 0.01 {
            HintAgreement::SameShape
        } else {
            HintAgreement::Mismatch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_compare_by_size_then_shape() {
        assert_eq!(
            HintAgreement::of((640, 480), (640, 480)),
            HintAgreement::Agrees
        );
        assert_eq!(
            HintAgreement::of((640, 480), (1280, 960)),
            HintAgreement::SameShape
        );
        assert_eq!(
            HintAgreement::of((640, 422), (640, 480)),
            HintAgreement::Mismatch
        );
    }

    #[test]
    fn a_body_that_is_no_picture_is_said_so() {
        let probe = Probe::of_body(b"<!doctype html><p>gone</p>", None);
        assert_eq!(probe.status, ProbeStatus::NotAnImage);
        assert_eq!(probe.size(), None);
    }
}
