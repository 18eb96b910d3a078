//! Errors of the HTTP routes, and the one table that decides for every error of every layer (URL,
//! fetch, pipeline, pool) its status, who is at fault, and whether it is remembered.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::Body;
use super::image::pool::PoolError;
use super::respond;
use crate::cache::Remember;
use crate::fetch::FetchError;
use crate::pipeline::PipelineError;
use crate::urls::UrlError;

/// Seconds a client is asked to wait when the transform or fetch queue is full.
pub(crate) const RETRY_AFTER_S: u64 = 1;

/// Whose fault an error is (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Client,
    Upstream,
    Internal,
}

impl Fault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Internal => "internal",
        }
    }
}

/// Why a request failed. Cloneable so one failure can answer every coalesced request and be
/// remembered briefly; causes are kept (see [`crate::cause`]).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("{0}")]
    Url(#[from] UrlError),
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The source could not be turned into the requested image.
    #[error("{0}")]
    Image(#[from] PipelineError),
    /// A transform panicked: it would again on the same bytes.
    #[error("internal error: the transform failed")]
    Panicked(String),
    #[error("too many images are being processed; retry shortly")]
    Busy,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// The blog origin refused the connection or failed before answering.
    #[error("origin unreachable")]
    OriginUnreachable,
    #[error("origin timed out")]
    OriginTimeout,
    /// A malformed request that no route should see (e.g. HTTP/1.1 without exactly one Host).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The control plane wants its token.
    #[error("unauthorized")]
    Unauthorized,
    /// The client sent its request body too slowly.
    #[error("request body too slow")]
    RequestTimeout,
}

impl From<PoolError> for RouteError {
    fn from(e: PoolError) -> RouteError {
        match e {
            PoolError::Full => RouteError::Busy,
            PoolError::Panicked(m) => RouteError::Panicked(m),
        }
    }
}

impl RouteError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            RouteError::Url(UrlError::BadSignature) => StatusCode::FORBIDDEN,
            RouteError::Url(_) => StatusCode::BAD_REQUEST,
            RouteError::Fetch(e) => match e {
                FetchError::HostNotAllowed(_) | FetchError::Forbidden(_) => StatusCode::FORBIDDEN,
                FetchError::NotFound => StatusCode::NOT_FOUND,
                FetchError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                FetchError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                FetchError::BadUrl(_)
                | FetchError::Status(_)
                | FetchError::TooManyRedirects(_)
                | FetchError::Connect(_)
                | FetchError::Body(_) => StatusCode::BAD_GATEWAY,
            },
            RouteError::Image(e) => match e {
                PipelineError::TooManyPixels { .. }
                | PipelineError::DecoderLimit
                | PipelineError::TooManyFrames { .. }
                | PipelineError::TooManyScans { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                PipelineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                PipelineError::Empty
                | PipelineError::NotAnImage
                | PipelineError::Unsupported(_)
                | PipelineError::SvgNotAllowed
                | PipelineError::Truncated
                | PipelineError::Corrupt(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            },
            RouteError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            RouteError::Internal(_) | RouteError::Panicked(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RouteError::NotFound => StatusCode::NOT_FOUND,
            RouteError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RouteError::OriginUnreachable => StatusCode::BAD_GATEWAY,
            RouteError::OriginTimeout => StatusCode::GATEWAY_TIMEOUT,
            RouteError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RouteError::Unauthorized => StatusCode::UNAUTHORIZED,
            RouteError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub(crate) fn fault(&self) -> Fault {
        match self {
            RouteError::Url(_)
            | RouteError::NotFound
            | RouteError::MethodNotAllowed { .. }
            | RouteError::BadRequest(_)
            | RouteError::Unauthorized
            | RouteError::RequestTimeout => Fault::Client,
            RouteError::Fetch(FetchError::HostNotAllowed(_) | FetchError::Forbidden(_)) => {
                Fault::Client
            }
            RouteError::Image(PipelineError::Internal(_)) => Fault::Internal,
            RouteError::Fetch(_)
            | RouteError::Image(_)
            | RouteError::OriginUnreachable
            | RouteError::OriginTimeout => Fault::Upstream,
            RouteError::Busy | RouteError::Internal(_) | RouteError::Panicked(_) => Fault::Internal,
        }
    }

    /// A short text answer that is never cached by clients or shared caches.
    pub(crate) fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut text = match &self {
            // Internal details stay in the log.
            RouteError::Internal(_) | RouteError::Panicked(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        text.truncate(200);
        text.push('\n');
        let mut response = respond::text(&Method::GET, status, text);
        let h = response.headers_mut();
        if matches!(self, RouteError::Unauthorized) {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"imgrelay\""),
            );
        }
        if matches!(self, RouteError::Busy) {
            h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        if let RouteError::MethodNotAllowed { allow } = self {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

impl Remember for RouteError {
    /// Upstream and image failures say something about the source, and so does a transform
    /// that panicked (it would again on the same bytes: retrying it on every request would only
    /// repeat the crash); load and other internal trouble do not.
    fn remember(&self) -> bool {
        matches!(
            self,
            RouteError::Fetch(_) | RouteError::Image(_) | RouteError::Panicked(_)
        )
    }

    fn lost() -> Self {
        RouteError::Internal("the work for this image ended without a result".into())
    }
}

/// The status the image route answers for a pipeline error (for the pipeline's tests).
#[cfg(feature = "_internals")]
pub fn image_status(e: &PipelineError) -> StatusCode {
    RouteError::Image(e.clone()).status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let cases = [
            (RouteError::Url(UrlError::BadSignature), 403),
            (RouteError::Url(UrlError::Malformed("x")), 400),
            (
                RouteError::Fetch(FetchError::Forbidden("127.0.0.1".into())),
                403,
            ),
            (RouteError::Fetch(FetchError::NotFound), 404),
            (RouteError::Fetch(FetchError::Status(500)), 502),
            (RouteError::Fetch(FetchError::Timeout), 504),
            (RouteError::Fetch(FetchError::TooLarge(1)), 413),
            (RouteError::Image(PipelineError::NotAnImage), 415),
            (RouteError::Image(PipelineError::DecoderLimit), 413),
            (RouteError::Panicked("boom".into()), 500),
            (RouteError::Busy, 503),
            (RouteError::OriginUnreachable, 502),
            (RouteError::OriginTimeout, 504),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
        }
        let r = RouteError::Busy.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            respond::SANDBOX_CSP
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
