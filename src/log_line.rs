//! The text log line: tracing's default layout (`2026-12-04T02:38:00.123456Z  INFO target:
//! message key=value …`) without colours, written with plain string appends. Every request writes
//! one such line, so the generic formatter's style wrappers, padding and date arithmetic through
//! `core::fmt` were a tenth of a cache hit's CPU.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats every text event; the JSON layout stays tracing's.
pub(crate) struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events from crates that log through `log` carry their real target and level here.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_char(' ')?;
        writer.write_str(level_name(meta.level()))?;
        writer.write_char(' ')?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Level names as tracing aligns them: five columns, right-aligned.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// RFC 3339 in UTC with microseconds, as tracing writes it.
fn write_timestamp(out: &mut impl Write, now: SystemTime) -> fmt::Result {
    // A clock before 1970 is written as the epoch rather than as a negative date.
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], of_day / 3600);
    put_digits(&mut text[14..16], of_day / 60 % 60);
    put_digits(&mut text[17..19], of_day % 60);
    put_digits(&mut text[20..26], u64::from(since.subsec_micros()));
    // Only ASCII digits were written into an ASCII template.
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// Writes the low decimal digits of `value` into `slot`, zero-padded to its width.
fn put_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Year, month and day of the `days`th day since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes an event's fields as tracing's default formatter does: the message bare, the others
/// `name=value` separated by spaces, `&str` values quoted.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// Starts a field: the separating space and, for all but the message, `name=`.
    fn begin(&mut self, field: &Field) -> bool {
        let name = field.name();
        // Metadata of `log` records, already written as target and level.
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.out.write_char(' ');
        }
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .result
                .and_then(|()| self.out.write_str(name))
                .and_then(|()| self.out.write_char('='));
        }
        self.result.is_ok()
    }

    fn value(&mut self, value: fmt::Arguments<'_>) {
        self.result = Escaped(&mut *self.out).write_fmt(value);
    }
}

impl Visit for Fields<'_, '_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.begin(field) {
            self.result = self.out.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.begin(field) {
            self.result = self.out.write_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.begin(field) {
            self.result = self.out.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.begin(field) {
            if field.name() == "message" {
                self.result = Escaped(&mut *self.out).write_str(value);
            } else {
                self.value(format_args!("{value:?}"));
            }
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.begin(field) {
            self.value(format_args!("{value}"));
            let mut source = value.source();
            if source.is_some() {
                self.value(format_args!(" {}.sources=[", field.name()));
            }
            let mut first = true;
            while let Some(cause) = source {
                let separator = if std::mem::take(&mut first) { "" } else { ", " };
                self.value(format_args!("{separator}{cause}"));
                source = cause.source();
                if source.is_none() {
                    self.value(format_args!("]"));
                }
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.begin(field) {
            self.value(format_args!("{value:?}"));
        }
    }
}

/// Passes text through with terminal control characters written as escapes, so that nothing a
/// client sent (a path, a header in an error) can move the cursor or forge a line.
struct Escaped<'a, W>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // C0 controls, DEL, and the lead byte of every C1 control (U+0080..U+009F).
        let clean = |b: u8| b >= 0x20 && b != 0x7f && b != 0xc2;
        if s.bytes().all(clean) {
            return self.0.write_str(s);
        }
        for ch in s.chars() {
            if ch.is_control() {
                write!(self.0, "\\u{{{:x}}}", u32::from(ch))?;
            } else {
                self.0.write_char(ch)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        for (secs, micros, text) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (4_107_542_399, 999_999, "2100-02-28T23:59:59.999999Z"),
            (1_796_351_880, 123_456, "2026-12-04T02:38:00.123456Z"),
        ] {
            let at = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            let mut out = String::new();
            write_timestamp(&mut out, at).unwrap();
            assert_eq!(out, text);
        }
    }

    /// A `MakeWriter` into a buffer the test reads back.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            crate::sync::lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Collect {
        type Writer = Collect;
        fn make_writer(&'a self) -> Collect {
            self.clone()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);
    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] io::Error);

    fn events() {
        let path = "/img/s/abc/320x211/http%3A%2F%2Fexample.com%2Fa.jpg";
        tracing::info!(method = %"GET", path = %path, status = 200u16, ms = 3u64, cache = %"HIT", "request");
        tracing::warn!(fault = "upstream", error = %"refused (os error 111)", "request failed");
        tracing::error!(
            offset = -4i64,
            ok = true,
            ratio = 0.5f64,
            "plain {} message",
            7
        );
        let error = Outer(Middle(io::Error::other("inner")));
        tracing::warn!(
            error = &error as &(dyn std::error::Error + 'static),
            "chained"
        );
        tracing::info!(r#type = %"jpeg", "raw name");
    }

    fn lines(out: &Collect) -> Vec<String> {
        let text = String::from_utf8(crate::sync::lock(&out.0).clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn lines_match_tracings_default_layout_without_colours() {
        let ours = Collect::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(LineFormat)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let theirs = Collect::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let (ours, theirs) = (lines(&ours), lines(&theirs));
        assert_eq!(ours.len(), 5);
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            // The timestamps differ by the time between the two runs.
            assert_eq!(a.get(..4), b.get(..4), "{a}\n{b}");
            assert_eq!(a.get(27..), b.get(27..), "{a}\n{b}");
        }
        assert!(ours[0].ends_with(
            " INFO imgrelay::log_line::tests: request method=GET \
             path=/img/s/abc/320x211/http%3A%2F%2Fexample.com%2Fa.jpg status=200 ms=3 cache=HIT"
        ));
    }

    #[test]
    fn control_characters_are_escaped() {
        let out = Collect::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(LineFormat)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(path = %"/a\nforged\x1b[31m\u{9b}é", "request\r");
        });
        let lines = lines(&out);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with(r"request\u{d} path=/a\u{a}forged\u{1b}[31m\u{9b}é"),
            "{}",
            lines[0]
        );
    }
}
