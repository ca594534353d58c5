//! Heap settings for the one-shot query commands (`kelp sql`, `kelp stats`).
//!
//! A query process lives for tens of milliseconds and spends a large share of them in the kernel
//! handing out fresh 4 KiB pages: DataFusion's hash tables and string buffers grow by doubling, and
//! glibc gives each large buffer its own `mmap` and returns it on free, so every growth touches new
//! zeroed pages (27k page faults for the top-videos query of `kelp bench sql`). Here glibc's
//! allocator keeps one heap that grows in 128 MiB steps and is never trimmed back while the process
//! lives, and that heap is backed by transparent huge pages (`MADV_HUGEPAGE`; the kernel's usual
//! THP mode is `madvise`, so nothing is huge unless asked): ~3.3k page faults and 0.76× the time
//! on that query. One arena serves all threads, so the huge-page region is the one every thread
//! allocates from; glibc's per-thread caches still serve small allocations without its lock.
//!
//! Only glibc on Linux; elsewhere these are no-ops. Not for long-lived processes (`kelp serve`,
//! runs): they keep the allocator's defaults, which return memory to the system.

/// Sets the heap up for a short query process. Call before any thread starts. Returns whether
/// huge pages were asked for the heap (false off glibc, or where the kernel refused).
pub fn tune_for_query() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    return glibc::tune();
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// The heap grows by at least this much each time it grows.
    const TOP_PAD: usize = 128 << 20;
    /// Buffers below this come from the heap rather than their own mapping.
    const MMAP_THRESHOLD: usize = 256 << 20;
    /// Free space at the heap's top is returned to the system only above this.
    const TRIM_THRESHOLD: usize = 512 << 20;

    pub fn tune() -> bool {
        // SAFETY: mallopt, malloc, sbrk(0) (reads the break), madvise on a range inside the heap
        // that malloc just grew (MADV_HUGEPAGE only sets a flag on the mapping) and free of the
        // pointer malloc returned. Nothing else holds these addresses.
        unsafe {
            let ok = libc::mallopt(libc::M_ARENA_MAX, 1) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TOP_PAD, TOP_PAD as libc::c_int) == 1;
            if !ok {
                tracing::debug!("glibc refused a heap setting; keeping its defaults");
                return false;
            }
            // A block larger than what is free makes the heap grow now, by TOP_PAD more; the
            // region from it to the new break is the heap queries will fill.
            let probe = libc::malloc(1 << 20);
            if probe.is_null() {
                return false;
            }
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
            let top = libc::sbrk(0) as usize;
            // The kernel backs the 2 MiB-aligned stretches of the flagged range with huge pages.
            let start = probe as usize - probe as usize % page;
            let end = top - top % page;
            let mut asked = false;
            if end > start {
                let rc =
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                tracing::debug!(
                    mib = (end - start) >> 20,
                    rc,
                    "query heap: huge pages asked"
                );
                asked = rc == 0;
            }
            libc::free(probe);
            asked
        }
    }
}
