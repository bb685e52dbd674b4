//! 64-byte aligned, zero-initialised buffers for packed panels and scratch.
//!
//! Packed weight panels are read with 64-byte vector and tile loads; when the allocator placed
//! them at arbitrary addresses, timings varied by 20-50 % from one process to the next on the
//! reference machine. Aligning every packed buffer removes that variance.

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::ops::{Deref, DerefMut};

/// A zero-initialised, 64-byte aligned buffer of plain integer or float elements.
pub(crate) struct AlignedBuf<T: Copy> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: the buffer owns its allocation exclusively, like a `Vec<T>`.
unsafe impl<T: Copy + Send> Send for AlignedBuf<T> {}
// SAFETY: shared access only hands out `&[T]`.
unsafe impl<T: Copy + Sync> Sync for AlignedBuf<T> {}

/// Element types for which the all-zero bit pattern is a valid value.
pub(crate) trait Zeroable: Copy {}
impl Zeroable for u8 {}
impl Zeroable for i8 {}
impl Zeroable for i16 {}
impl Zeroable for i32 {}
impl Zeroable for f32 {}

impl<T: Zeroable> AlignedBuf<T> {
    fn layout(len: usize) -> Layout {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).expect("buffer size overflows usize");
        // Round up so that 64-byte loads at the end never leave the allocation.
        Layout::from_size_align(bytes.div_ceil(64).max(1) * 64, 64).expect("valid layout")
    }

    /// A buffer of `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: the layout has non-zero size.
        let raw = unsafe { alloc_zeroed(layout) } as *mut T;
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(layout));
        Self { ptr, len }
    }

    /// Capacity-only growth helper: makes the buffer at least `len` long (contents zeroed).
    pub(crate) fn ensure_len(&mut self, len: usize) {
        if self.len < len {
            *self = Self::zeroed(len.next_power_of_two());
        }
    }
}

impl<T: Copy> Drop for AlignedBuf<T> {
    fn drop(&mut self) {
        let bytes = self.len * std::mem::size_of::<T>();
        let layout = Layout::from_size_align(bytes.div_ceil(64).max(1) * 64, 64).expect("valid layout");
        // SAFETY: allocated in `zeroed` with this same layout.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) }
    }
}

impl<T: Copy> Deref for AlignedBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements live at `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for AlignedBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: `len` initialised elements live at `ptr`, and we hold `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Clone for AlignedBuf<T> {
    fn clone(&self) -> Self {
        let mut b = Self::zeroed(self.len);
        b.copy_from_slice(self);
        b
    }
}
