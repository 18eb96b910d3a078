//! imgrelay: an image proxy and streaming HTML rewriter for articles whose images are hot-linked
//! through public CORS proxies.

pub mod allocator;
pub mod cache;
pub mod cause;
pub mod cli;
pub mod config;
pub mod fetch;
pub mod hosts;
pub mod pipeline;
pub mod rewrite;
pub mod secret_file;
pub mod server;
pub mod signing;
pub mod sync;
pub mod urls;
