//! imgrelay: an image proxy and streaming HTML rewriter for articles whose images are hot-linked
//! through public CORS proxies.

pub mod cli;
pub mod config;
pub mod hosts;
pub mod rewrite;
pub mod signing;
pub mod urls;
