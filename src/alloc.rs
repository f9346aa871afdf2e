//! The broker's global allocator: the system allocator, except that very
//! large allocations are served by lazily committed anonymous mappings.
//!
//! Why: decoders size vectors from lengths read off the wire before the
//! elements are read (the `kafka-protocol` crate calls
//! `Vec::with_capacity(n)` for an array of `n` entries). A garbage frame
//! claiming 2^31 entries asks for hundreds of GB, which the system allocator
//! refuses, and Rust aborts the process on a failed allocation. With
//! `MAP_NORESERVE` such a request only reserves address space; decoding then
//! fails on the missing elements and the mapping is released untouched, so
//! one bad client cannot take the broker down.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large bypass the system allocator.
pub const HUGE: usize = 1 << 30;

pub struct BrokerAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= 4096
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: anonymous private mapping with no address hint; the kernel
    // returns page-aligned zeroed memory or MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every method either forwards to `System` with the caller's
// arguments or manages a mapping whose size is the layout size, which the
// caller passes back unchanged on dealloc/realloc (GlobalAlloc contract).
unsafe impl GlobalAlloc for BrokerAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: see `map`.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map(layout.size())`.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: forwarded GlobalAlloc contract.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded GlobalAlloc contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate the new block, copy the overlapping prefix, free
        // the old block with its own layout.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_succeed_and_small_ones_round_trip() {
        let a = BrokerAlloc;
        let huge = Layout::from_size_align(200 << 30, 8).unwrap();
        // SAFETY: layouts are valid; memory is freed with the same layout.
        unsafe {
            let p = a.alloc(huge);
            assert!(!p.is_null(), "200 GiB reservation must not fail");
            *p = 7;
            let q = a.realloc(p, huge, 16);
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(16, 8).unwrap());
            let small = Layout::from_size_align(64, 8).unwrap();
            let s = a.alloc_zeroed(small);
            assert_eq!(*s.add(63), 0);
            a.dealloc(s, small);
        }
    }
}
