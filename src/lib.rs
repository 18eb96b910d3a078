//! imgrelay: an image proxy and streaming HTML rewriter for articles whose images are hot-linked
//! through public CORS proxies.
//!
//! The public surface is what the `imgrelay` binary and its tests drive: the commands, the
//! config, the keys, the URL scheme, the rewriter and the image transform. Everything else is
//! private to the crate. Benchmarks and tests that time or check single stages enable the
//! `_internals` feature, which is not part of the API.

pub mod allocator;
mod cache;
mod cause;
pub mod cli;
pub mod config;
mod fetch;
mod hosts;
mod log_line;
mod log_writer;
pub mod pipeline;
pub mod probe;
pub mod rewrite;
mod secret_file;
mod server;
mod shared_cache;
pub mod signing;
mod sync;
pub mod urls;

#[cfg(any(test, feature = "_internals"))]
#[doc(hidden)]
pub mod internals;
