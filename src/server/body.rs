//! The response body type shared by every route.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Boxed so routes can answer with buffered bytes now and streamed bodies later.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body being read (a request, an origin's answer), boxed once whatever its source.
pub type SourceBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}
