//! Command implementations behind `src/main.rs`.

pub mod probe;
pub mod rewrite;
pub mod serve;
pub mod sign;
pub mod warm;

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Settings;
use crate::rewrite::RewriteContext;
use crate::signing::KeyRing;

/// Exit status for bad usage (and config errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when work failed.
pub const EXIT_FAILED: u8 = 1;

/// Reads the signing keys and builds the rewrite context, or says why not.
pub fn context(settings: Settings) -> Result<Arc<RewriteContext>, ExitCode> {
    let keys = KeyRing::load(&settings.keys).map_err(|e| {
        eprintln!("imgrelay: {e}");
        ExitCode::from(EXIT_FAILED)
    })?;
    for warning in keys.warnings() {
        eprintln!("imgrelay: warning: signing key file {warning}");
    }
    Ok(RewriteContext::new(settings.rewrite, keys))
}
