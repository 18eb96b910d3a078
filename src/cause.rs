//! The cause kept inside an error that must stay `Clone`: one failure answers every coalesced
//! request and is remembered briefly, and still shows its whole chain in the log.

use std::sync::Arc;

/// A shared, `Clone` cause with its own source chain.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// `error` and its sources, joined with ": ", for log lines.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
