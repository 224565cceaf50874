//! Allocator settings for tensor workloads.
//!
//! Training allocates and frees activation-sized buffers (megabytes each) every step. With
//! mimalloc's defaults, freed arena memory is purged back to the OS after 10 ms and the next step
//! faults it in again, zeroing each page: a profile of the benchmark transformer showed 11-22% of
//! the step in the kernel's `clear_page`. Keeping freed memory mapped (no purge, eagerly committed
//! arenas) removes that; the cost is that the process keeps its peak footprint.

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

// Positions in mimalloc v3's `mi_option_e` (the version libmimalloc-sys builds by default); the
// sys crate does not name these two.
const MI_OPTION_ARENA_EAGER_COMMIT: mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Applies the settings unless the user set them through `MIMALLOC_*` variables. Call first
/// thing in `main` of a binary whose global allocator is mimalloc.
pub fn tune_mimalloc_for_tensors() {
    // SAFETY: mi_option_set only stores an integer option; it is safe at any time.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 1);
        }
    }
}

/// The purge delay in force (ms; -1 = never purge).
pub fn mimalloc_purge_delay() -> i64 {
    // SAFETY: reads an integer option.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tuning_disables_purging() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            super::tune_mimalloc_for_tensors();
            assert_eq!(super::mimalloc_purge_delay(), -1);
        }
    }
}
