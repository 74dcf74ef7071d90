//! The host's half of the shared heap: this binary's global allocator as a
//! C table, handed to every plugin before it runs any code (the plugin's
//! half is `rediff_api::__private::PluginAllocator`).

use std::alloc::Layout;

use rediff_api::__private::HostAllocator;

unsafe extern "C" fn host_alloc(size: usize, align: usize) -> *mut u8 {
    std::alloc::alloc(Layout::from_size_align_unchecked(size, align))
}

unsafe extern "C" fn host_alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    std::alloc::alloc_zeroed(Layout::from_size_align_unchecked(size, align))
}

unsafe extern "C" fn host_dealloc(ptr: *mut u8, size: usize, align: usize) {
    std::alloc::dealloc(ptr, Layout::from_size_align_unchecked(size, align))
}

unsafe extern "C" fn host_realloc(ptr: *mut u8, size: usize, align: usize, new: usize) -> *mut u8 {
    std::alloc::realloc(ptr, Layout::from_size_align_unchecked(size, align), new)
}

/// This binary's global allocator, as a table (what the loader hands over).
pub static HOST_ALLOCATOR: HostAllocator = HostAllocator {
    alloc: host_alloc,
    alloc_zeroed: host_alloc_zeroed,
    dealloc: host_dealloc,
    realloc: host_realloc,
};
