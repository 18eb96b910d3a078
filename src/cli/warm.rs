//! `imgrelay rewrite --warm URL`: after rewriting, every variant the output advertises is
//! requested from the server at URL (normally nginx in front of imgrelay), once for each set
//! of formats readers negotiate, so that the first reader of a new post finds every cache warm.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use url::Url;

use crate::pipeline::{negotiate, Format, FormatSet, Options};

/// Requests in flight at once: enough to keep a server's transform pool busy, few enough to
/// leave it room for readers.
const CONCURRENCY: usize = 8;
/// One variant may need a fetch and a transform of a large source.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `Accept` headers readers send, from the most capable: current browsers, browsers
/// without AVIF, and clients naming no image format (feed readers, crawlers). Each URL is
/// requested once per distinct set of formats these negotiate, which is how the server and
/// deploy/nginx.conf key their caches.
const READER_ACCEPTS: [Option<&str>; 3] = [
    Some("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),
    Some("image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),
    None,
];

/// Reads `--warm`'s argument: an http(s) origin, such as `http://127.0.0.1:8080`.
pub fn parse_base(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(
            "expected an origin without a path (e.g. http://127.0.0.1:8080): the advertised \
             paths are requested as they are"
                .into(),
        );
    }
    Ok(url)
}

/// One request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    url: String,
    accept: Option<&'static str>,
    /// What the server negotiates for `accept`.
    formats: FormatSet,
}

/// What warming did.
#[derive(Debug)]
pub struct WarmSummary {
    /// Distinct advertised URLs.
    pub urls: usize,
    /// Requests answered with a success status.
    pub warmed: usize,
    /// Each failed request: URL, `Accept`, reason.
    pub failed: Vec<(String, &'static str, String)>,
    pub elapsed: Duration,
}

/// The requests for the advertised URLs of each document: the first URL of every document
/// first (its first image is the likely LCP element), then the rest in document order. Each
/// URL goes once per distinct format set; a URL forcing its format goes once.
fn plan(base: &Url, docs: &[Vec<String>], preference: &[Format]) -> (Vec<Job>, usize) {
    let firsts = docs.iter().filter_map(|d| d.first());
    let rest = docs.iter().flat_map(|d| d.iter().skip(1));
    let mut seen_urls = HashSet::new();
    let mut seen = HashSet::<(String, FormatSet)>::new();
    let mut jobs = Vec::new();
    for advertised in firsts.chain(rest) {
        let Some(url) = target(base, advertised) else {
            continue;
        };
        seen_urls.insert(url.clone());
        let forced = forced_format(&url);
        for accept in READER_ACCEPTS {
            let formats = negotiate(accept, preference, forced);
            if seen.insert((url.clone(), formats)) {
                jobs.push(Job {
                    url: url.clone(),
                    accept,
                    formats,
                });
            }
        }
    }
    (jobs, seen_urls.len())
}

/// Where an advertised URL is requested: its path (and query) on `base`.
fn target(base: &Url, advertised: &str) -> Option<String> {
    let path = if advertised.starts_with('/') && !advertised.starts_with("//") {
        advertised.to_string()
    } else {
        let absolute = Url::parse(advertised).ok()?;
        match absolute.query() {
            Some(q) => format!("{}?{q}", absolute.path()),
            None => absolute.path().to_string(),
        }
    };
    base.join(&path).ok().map(String::from)
}

/// The format a proxied URL forces in its options segment (`…/{sig}/{options}/{source}`).
fn forced_format(url: &str) -> Option<Format> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let options = path.rsplit('/').nth(1)?;
    Options::parse(options).ok()?.format
}

/// Requests every advertised variant from `base`; `tls` is used for an https base.
pub fn warm(
    base: &Url,
    docs: &[Vec<String>],
    preference: &[Format],
    tls: rustls::ClientConfig,
) -> Result<WarmSummary, String> {
    let (jobs, urls) = plan(base, docs, preference);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the warm-up: {e}"))?;
    let started = Instant::now();
    let (warmed, failed) = runtime.block_on(run(jobs, tls));
    Ok(WarmSummary {
        urls,
        warmed,
        failed,
        elapsed: started.elapsed(),
    })
}

type Failure = (String, &'static str, String);

async fn run(jobs: Vec<Job>, tls: rustls::ClientConfig) -> (usize, Vec<Failure>) {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build(https);
    let places = Arc::new(Semaphore::new(CONCURRENCY));
    let total = jobs.len();
    let progress = total > 0 && std::io::stderr().is_terminal();
    let mut tasks = tokio::task::JoinSet::new();
    let mut warmed = 0;
    let mut failed = Vec::new();
    let mut done = 0;
    let mut note = |result: Result<(), Failure>, done: &mut usize| {
        *done += 1;
        match result {
            Ok(()) => warmed += 1,
            Err(failure) => failed.push(failure),
        }
        if progress {
            eprint!("\r\x1b[Kwarming [{done}/{total}]");
        }
    };
    for job in jobs {
        // Started in plan order, so the likely LCP images are warm first.
        let Ok(place) = places.clone().acquire_owned().await else {
            break;
        };
        let client = client.clone();
        tasks.spawn(async move {
            let _place = place;
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, request(&client, &job)).await;
            match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err((job.url, formats_name(job.formats), reason)),
                Err(_) => Err((
                    job.url,
                    formats_name(job.formats),
                    format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
                )),
            }
        });
        while let Some(finished) = tasks.try_join_next() {
            note(joined(finished), &mut done);
        }
    }
    while let Some(finished) = tasks.join_next().await {
        note(joined(finished), &mut done);
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    (warmed, failed)
}

fn joined(finished: Result<Result<(), Failure>, tokio::task::JoinError>) -> Result<(), Failure> {
    finished.unwrap_or_else(|e| Err((String::new(), "", format!("warm-up task failed: {e}"))))
}

/// How a job's format set is named in messages.
fn formats_name(formats: FormatSet) -> &'static str {
    match (
        formats.contains(Format::Avif),
        formats.contains(Format::Webp),
    ) {
        (true, true) => "AVIF and WebP",
        (true, false) => "AVIF",
        (false, true) => "WebP",
        (false, false) => "no image format",
    }
}

/// One GET, its body read to the end so that a cache in between stores the whole answer.
async fn request<C>(client: &Client<C, Empty<Bytes>>, job: &Job) -> Result<(), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut builder = Request::get(job.url.as_str()).header(header::USER_AGENT, "imgrelay-warm");
    if let Some(accept) = job.accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    let request = builder
        .body(Empty::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| crate::cause::chain(&e))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {}", crate::cause::chain(&e)))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_an_origin() {
        assert!(parse_base("http://127.0.0.1:8080").is_ok());
        assert!(parse_base("https://blog.example/").is_ok());
        assert!(parse_base("ftp://blog.example/").is_err());
        assert!(parse_base("http://blog.example/img").is_err());
        assert!(parse_base("127.0.0.1:8080").is_err());
    }

    #[test]
    fn first_images_go_first_and_each_format_set_once() {
        let base = parse_base("http://127.0.0.1:8080").unwrap();
        let docs = vec![
            vec!["/img/s1/640x0/a".to_string(), "/img/s2/320x0/a".to_string()],
            vec![
                "https://cdn.example/img/s3/640x0,webp/b".to_string(),
                "/img/s1/640x0/a".to_string(),
            ],
        ];
        let preference = [Format::Avif, Format::Webp, Format::Jpeg];
        let (jobs, urls) = plan(&base, &docs, &preference);
        assert_eq!(urls, 3);
        let order: Vec<(&str, &str)> = jobs
            .iter()
            .map(|j| (j.url.as_str(), formats_name(j.formats)))
            .collect();
        let a1 = "http://127.0.0.1:8080/img/s1/640x0/a";
        let b = "http://127.0.0.1:8080/img/s3/640x0,webp/b";
        let a2 = "http://127.0.0.1:8080/img/s2/320x0/a";
        assert_eq!(
            order,
            [
                (a1, "AVIF and WebP"),
                (a1, "WebP"),
                (a1, "no image format"),
                (b, "WebP"),
                (a2, "AVIF and WebP"),
                (a2, "WebP"),
                (a2, "no image format"),
            ]
        );
        // Without AVIF configured, a browser sending AVIF and WebP negotiates what one
        // sending WebP alone does.
        let (jobs, _) = plan(&base, &docs[..1], &[Format::Webp, Format::Jpeg]);
        assert_eq!(jobs.len(), 4);
    }
}
