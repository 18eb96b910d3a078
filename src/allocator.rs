//! Allocator tuning shared by the binary and the benchmarks, so both measure the same thing.
//!
//! glibc malloc stays: mimalloc made the rewriter ~15% faster but kept ~100 MB more resident under
//! the image miss load (measured with benches/load.sh), and the server's footprint matters more.

/// Call once at start-up, before other threads exist.
pub fn tune() {
    // glibc gives every allocating thread its own arena (up to 8 per core), each keeping its own
    // high-water mark of the codecs' freed buffers; two are plenty for a few transform workers.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    // The crate's one unsafe block: glibc has no safe binding for it.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
