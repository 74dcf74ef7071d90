//! One heap for host and plugins. A `cdylib` links its own copy of the
//! standard library with its own global allocator, while the `rediff` binary
//! uses mimalloc: a `String` made in a plugin and dropped by the host would
//! be freed by the wrong allocator. Plugins therefore install
//! [`PluginAllocator`], which forwards to the host's allocator once the
//! loader has handed it over (before the plugin runs any code).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The host's allocation functions, as the loader passes them to a plugin
/// (the host's table is `rediff_dynamic::HOST_ALLOCATOR`).
#[repr(C)]
pub struct HostAllocator {
    /// `alloc(size, align)`.
    pub alloc: unsafe extern "C" fn(usize, usize) -> *mut u8,
    /// `alloc_zeroed(size, align)`.
    pub alloc_zeroed: unsafe extern "C" fn(usize, usize) -> *mut u8,
    /// `dealloc(ptr, size, align)`.
    pub dealloc: unsafe extern "C" fn(*mut u8, usize, usize),
    /// `realloc(ptr, size, align, new_size)`.
    pub realloc: unsafe extern "C" fn(*mut u8, usize, usize, usize) -> *mut u8,
}

static TABLE: AtomicPtr<HostAllocator> = AtomicPtr::new(std::ptr::null_mut());

/// Installs the host's allocator in this (plugin) copy of `rediff-api`.
///
/// # Safety
/// `table` must point to a [`HostAllocator`] that lives for the rest of
/// the process, and the call must come before the plugin allocates.
pub unsafe extern "C" fn set_host_allocator(table: *const HostAllocator) {
    TABLE.store(table as *mut HostAllocator, Ordering::Release);
}

/// The global allocator [`export_plugin!`](crate::export_plugin) installs in
/// a plugin: the host's once handed over, the system's before.
pub struct PluginAllocator;

unsafe impl GlobalAlloc for PluginAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match TABLE.load(Ordering::Acquire).as_ref() {
            Some(t) => (t.alloc)(layout.size(), layout.align()),
            None => System.alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match TABLE.load(Ordering::Acquire).as_ref() {
            Some(t) => (t.alloc_zeroed)(layout.size(), layout.align()),
            None => System.alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match TABLE.load(Ordering::Acquire).as_ref() {
            Some(t) => (t.dealloc)(ptr, layout.size(), layout.align()),
            None => System.dealloc(ptr, layout),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match TABLE.load(Ordering::Acquire).as_ref() {
            Some(t) => (t.realloc)(ptr, layout.size(), layout.align(), new_size),
            None => System.realloc(ptr, layout, new_size),
        }
    }
}
