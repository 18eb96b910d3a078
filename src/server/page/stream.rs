//! Streams one body to the client through a bounded channel, optionally through the rewriter.
//!
//! The rewriter is synchronous, so a task feeds it chunk by chunk as the source arrives and
//! forwards what it produced at once: the first rewritten bytes leave before the source ends,
//! and memory stays bounded by the channel capacity and the rewriter's own cap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use encoding_rs::Encoding;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use crate::rewrite::{DocKind, Passthrough, RewriteContext, Rewriter};
use crate::server::body::{Body, BoxError, SourceBody};
use crate::server::client_body::is_too_slow;
use crate::server::metrics::Metrics;
use crate::sync::lock;

/// Chunks in flight between the pump and the client connection.
const CHANNEL_CHUNKS: usize = 8;

/// How a pumped body is rewritten.
pub(crate) struct RewriteJob {
    pub ctx: Arc<RewriteContext>,
    pub kind: DocKind,
    /// The transport's charset (`Content-Type` parameter), if any.
    pub charset: Option<&'static Encoding>,
}

/// Why a source body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("no data for {0:?}")]
    Idle(Duration),
    /// The client sent its body too slowly (see [`super::client_body`]).
    #[error("{0}")]
    TooSlow(BoxError),
    #[error("body failed: {0}")]
    Failed(BoxError),
}

impl SourceError {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            SourceError::Idle(_) | SourceError::TooSlow(_) => "body_timeout",
            SourceError::Failed(_) => "body",
        }
    }
}

/// Options of one pump.
pub(crate) struct Pump {
    pub rewrite: Option<RewriteJob>,
    /// Longest wait for the next source chunk.
    pub idle: Duration,
    pub metrics: Arc<Metrics>,
    /// Counts a source failure by kind (`body`, `body_timeout`).
    pub on_error: fn(&Metrics, &'static str),
}

/// Starts pumping `source` and returns the client's body, fed by the pump task; an `Err` item
/// aborts the response, so a client never mistakes a cut document for a complete one.
pub(crate) fn spawn(source: SourceBody, pump: Pump) -> Body {
    let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::spawn(run(source, pump, tx));
    let frames = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    });
    StreamBody::new(frames).boxed()
}

type Sink = Arc<Mutex<Vec<u8>>>;

fn take(sink: &Sink) -> Vec<u8> {
    std::mem::take(&mut *lock(sink))
}

async fn run(mut source: SourceBody, mut pump: Pump, tx: mpsc::Sender<Result<Bytes, BoxError>>) {
    let sink: Sink = Arc::default();
    let mut rewriter = pump.rewrite.take().map(|job| {
        let out = sink.clone();
        Rewriter::new(job.ctx, job.kind, job.charset, move |b: &[u8]| {
            lock(&out).extend_from_slice(b)
        })
    });
    loop {
        let next = tokio::time::timeout(pump.idle, source.frame())
            .await
            .map_err(|_| SourceError::Idle(pump.idle));
        let frame = match next {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                let e = if is_too_slow(&*e) {
                    SourceError::TooSlow(e)
                } else {
                    SourceError::Failed(e)
                };
                fail(&pump, e, &tx).await;
                return;
            }
            Err(e) => {
                fail(&pump, e, &tx).await;
                return;
            }
        };
        let Ok(data) = frame.into_data() else {
            // Trailers are not forwarded.
            continue;
        };
        // Rewriting runs here, on the runtime: one chunk is at most a read buffer, so each
        // call is short.
        let out = match rewriter.as_mut() {
            Some(rw) => {
                rw.write(&data);
                Bytes::from(take(&sink))
            }
            None => data,
        };
        if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
            // The client went away; dropping the source aborts it.
            return;
        }
    }
    if let Some(rw) = rewriter {
        if let Some(reason) = &rw.end().passthrough {
            pump.metrics.rewriter_bailout(passthrough_kind(reason));
        }
        let tail = take(&sink);
        if !tail.is_empty() {
            let _ = tx.send(Ok(Bytes::from(tail))).await;
        }
    }
}

async fn fail(pump: &Pump, e: SourceError, tx: &mpsc::Sender<Result<Bytes, BoxError>>) {
    tracing::warn!(error = %e, "body stopped early; aborting the response");
    (pump.on_error)(&pump.metrics, e.kind());
    let _ = tx.send(Err(Box::new(e))).await;
}

fn passthrough_kind(p: &Passthrough) -> &'static str {
    match p {
        Passthrough::UnsupportedEncoding(_) => "unsupported_encoding",
        Passthrough::UnterminatedFrontMatter => "unterminated_front_matter",
        Passthrough::FrontMatterTooLarge(_) => "front_matter_too_large",
        Passthrough::BailedOut(_) => "bailed_out",
    }
}
