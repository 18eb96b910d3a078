//! Request bodies as the routes read them: a client that pauses too long, or trickles its body
//! slower than a minimum rate, gets its request ended (408) instead of holding it open.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::body::BoxError;

/// How fast a request body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// Longest pause between two chunks; also the grace before the rate counts.
    pub idle: Duration,
    /// Bytes per second the body must average after the grace (0: no minimum).
    pub min_rate: u64,
}

/// The request body arrived too slowly.
#[derive(Debug, thiserror::Error)]
#[error("request body arrived too slowly ({received} bytes in {elapsed:?})")]
pub(crate) struct TooSlow {
    received: u64,
    elapsed: Duration,
}

/// True when `error` (or one of its causes) is a [`TooSlow`].
pub(crate) fn is_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<TooSlow>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A client's request body under a [`BodyPace`]. The timer exists only once a route reads the
/// body, so requests without one cost nothing.
pub(crate) struct ClientBody {
    inner: Incoming,
    pace: BodyPace,
    started: Option<Instant>,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientBody {
    pub(crate) fn new(inner: Incoming, pace: BodyPace) -> ClientBody {
        ClientBody {
            inner,
            pace,
            started: None,
            received: 0,
            timer: None,
        }
    }

    /// The next moment by which more of the body must have arrived.
    fn deadline(&self, now: Instant) -> Instant {
        let started = self.started.unwrap_or(now);
        let gap = now + self.pace.idle;
        if self.pace.min_rate == 0 {
            return gap;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / self.pace.min_rate as f64);
        gap.min(started + self.pace.idle + earned)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.started.is_none() {
            let now = Instant::now();
            this.started = Some(now);
            this.timer = Some(Box::pin(tokio::time::sleep_until(this.deadline(now))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                let next = this.deadline(Instant::now());
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                let elapsed = this.started.map_or(Duration::ZERO, |s| s.elapsed());
                Poll::Ready(Some(Err(Box::new(TooSlow {
                    received: this.received,
                    elapsed,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
