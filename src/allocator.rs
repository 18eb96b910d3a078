//! Allocator tuning shared by the binary and the benchmarks, so both measure the same thing, and
//! the allocator's own figures for the metrics.
//!
//! glibc malloc stays: mimalloc made the rewriter ~15% faster but kept ~100 MB more resident under
//! the image miss load (measured with benches/load.sh), and the server's footprint matters more.

/// Call once at start-up, before other threads exist.
pub fn tune() {
    // glibc gives every allocating thread its own arena (up to 8 per core), each keeping its own
    // high-water mark of the codecs' freed buffers; two are plenty for a few transform workers.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    // glibc has no safe binding for it.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// What the allocator holds, summed over its arenas.
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    /// Bytes handed out and not yet freed, in the arenas and in mapped blocks.
    pub in_use: u64,
    /// Bytes the arenas keep after they were freed (reused before the arenas grow): what
    /// fragmentation and high-water marks cost.
    pub free: u64,
    /// Of `in_use`, the large blocks mapped one by one.
    pub mapped: u64,
}

/// The allocator's figures; `None` where the allocator is not glibc's.
pub fn heap() -> Option<HeapStats> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters (under its own locks) and
        // returns them by value.
        #[allow(unsafe_code)]
        let info = unsafe { libc::mallinfo2() };
        let mapped = info.hblkhd as u64;
        Some(HeapStats {
            in_use: info.uordblks as u64 + mapped,
            free: info.fordblks as u64,
            mapped,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}
