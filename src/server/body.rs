//! The response body type shared by every route.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Boxed so routes can answer with buffered bytes now and streamed bodies later.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body being read (a request, an origin's answer), boxed once whatever its source.
pub(crate) type SourceBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body that holds `T` until the body has ended (or is dropped), so that releasing `T` marks
/// the end of a response or an upload: a connection's busy mark, a "sent" signal.
pub(crate) struct Holding<B, T> {
    body: B,
    held: Option<T>,
}

impl<B: hyper::body::Body, T> Holding<B, T> {
    pub(crate) fn new(body: B, held: T) -> Holding<B, T> {
        let held = (!body.is_end_stream()).then_some(held);
        Holding { body, held }
    }
}

impl<B, T> hyper::body::Body for Holding<B, T>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    T: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(poll, Poll::Ready(None | Some(Err(_)))) || self.body.is_end_stream() {
            self.held = None;
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
