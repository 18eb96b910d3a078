//! HTTP/1.1 response heads as bytes: the ones the front writes for the answers it serves, and
//! the head a cached variant keeps ready so that a hit writes it without building it again.

use std::cell::Cell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BufMut;
use http::{HeaderMap, StatusCode};

/// `date: Thu, 03 Dec 2026 14:00:00 GMT\r\n`.
const DATE_LINE: usize = 6 + 29 + 2;

/// The status line of `status`, e.g. `HTTP/1.1 200 OK\r\n`.
pub(crate) fn status_line(out: &mut impl BufMut, status: StatusCode) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
}

/// Every field of `headers`, one `name: value\r\n` line each, in the map's order.
pub(crate) fn fields(out: &mut impl BufMut, headers: &HeaderMap) {
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// The `Date` field line for now. Rendered at most once a second per thread: every answer of a
/// busy second shares the text.
pub(crate) fn date_line() -> [u8; DATE_LINE] {
    thread_local! {
        static DATE: Cell<(u64, [u8; DATE_LINE])> = const { Cell::new((u64::MAX, [0; DATE_LINE])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let (cached, line) = cell.get();
        if cached == second {
            return line;
        }
        let mut line = [0u8; DATE_LINE];
        let mut out = &mut line[..];
        // The IMF-fixdate is always 29 bytes: the line is filled exactly.
        let _ = write!(out, "date: {}\r\n", httpdate::HttpDate::from(now));
        cell.set((second, line));
        line
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};

    #[test]
    fn heads_read_back_as_http() {
        let mut out = Vec::new();
        status_line(&mut out, StatusCode::NOT_MODIFIED);
        out.extend_from_slice(&date_line());
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(10_240));
        fields(&mut out, &h);
        out.extend_from_slice(b"\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let parsed = response.parse(&out).unwrap();
        assert_eq!(parsed, httparse::Status::Complete(out.len()));
        assert_eq!(response.code, Some(304));
        assert_eq!(response.reason, Some("Not Modified"));
        let date = std::str::from_utf8(response.headers[0].value).unwrap();
        assert_eq!(response.headers[0].name, "date");
        let when = httpdate::parse_http_date(date).unwrap();
        let skew = SystemTime::now().duration_since(when).unwrap_or_default();
        assert!(skew.as_secs() <= 2, "{date}");
        assert_eq!(response.headers[2].value, b"10240");
    }
}
