//! Ground services that every floor above may use, and that use nothing above the
//! configuration: Prometheus metric names and recording ([`metrics`]), alerts and their
//! sender ([`alert`]), the override types, the clock and the state file ([`state`]), and the
//! heap's release after a large free ([`release_free_memory`]).

pub mod alert;
pub mod metrics;
pub mod state;

/// Gives the heap's free pages back to the kernel. A reload frees a whole set of zones and
/// their prepared answers at once; without this, the allocator keeps them for a while (the
/// binary's, mimalloc, a second; glibc's, what it can) and the RSS after a reload of a large
/// zone stays at twice one zone's footprint.
pub fn release_free_memory() {
    // SAFETY: both only return free pages to the kernel; no allocation is touched.
    unsafe {
        libmimalloc_sys::mi_collect(true);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        libc::malloc_trim(0);
    }
}
