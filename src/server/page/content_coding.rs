//! Content codings an origin applies to HTML despite `Accept-Encoding: identity`: gzip and
//! deflate are undone while the body streams, so such a page can still be rewritten.

use std::io;
use std::pin::Pin;

use async_compression::tokio::bufread::{GzipDecoder, ZlibDecoder};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderMap, CONTENT_ENCODING};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::server::body::{BoxError, SourceBody};

/// Decoded bytes handed on at a time; with the pump's bounded channel this bounds the memory a
/// highly compressed page can take.
const PIECE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    /// HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
    Deflate,
}

impl Coding {
    /// The coding of a response; `None` for one that cannot be undone here (several codings,
    /// br, zstd …).
    pub(crate) fn of(headers: &HeaderMap) -> Option<Coding> {
        let mut values = headers.get_all(CONTENT_ENCODING).iter();
        let Some(value) = values.next() else {
            return Some(Coding::Identity);
        };
        if values.next().is_some() {
            return None;
        }
        let value = value.to_str().ok()?.trim();
        [
            ("identity", Coding::Identity),
            ("", Coding::Identity),
            ("gzip", Coding::Gzip),
            ("x-gzip", Coding::Gzip),
            ("deflate", Coding::Deflate),
        ]
        .into_iter()
        .find(|(name, _)| value.eq_ignore_ascii_case(name))
        .map(|(_, coding)| coding)
    }
}

/// `body` with `coding` undone. A corrupt stream ends the body with an error.
pub(crate) fn decoded<B>(body: B, coding: Coding) -> SourceBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let reader = |body: B| {
        StreamReader::new(BodyDataStream::new(
            body.map_err(|e| io::Error::other(e.into())),
        ))
    };
    let read: Pin<Box<dyn AsyncRead + Send>> = match coding {
        Coding::Identity => return body.map_err(Into::into).boxed_unsync(),
        Coding::Gzip => {
            let mut decoder = GzipDecoder::new(reader(body));
            decoder.multiple_members(true);
            Box::pin(decoder)
        }
        Coding::Deflate => Box::pin(ZlibDecoder::new(reader(body))),
    };
    let frames = ReaderStream::with_capacity(read, PIECE)
        .map(|piece| piece.map(Frame::data).map_err(BoxError::from));
    StreamBody::new(frames).boxed_unsync()
}
