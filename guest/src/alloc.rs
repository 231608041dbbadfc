//! The guest's allocator: free lists by size class in front of the system
//! allocator (wasi-libc's dlmalloc).
//!
//! A request allocates and frees thousands of small blocks: Rhai values,
//! map nodes, strings of a parsed JSON body. dlmalloc spends much of a
//! request on them (about a quarter of the guest's time for a 1 KB JSON
//! body). Here a block of up to [`MAX_SMALL`] bytes comes from the free list
//! of its 16-byte class and goes back to it: a pop and a push. The limit,
//! 2 KiB, covers the nodes of Rhai's maps (a leaf of eleven entries is over
//! 256 bytes on wasm32) and the string of a request body of a kilobyte or
//! two. Free lists
//! never return blocks to dlmalloc, so an instance keeps, per class, the most
//! it ever held at once; that is bounded by the instance's memory limit, and
//! an instance whose memory grows past the executor's threshold is discarded.
//!
//! The guest is single-threaded (`wasm32-wasip1` without threads), so the
//! lists need no lock.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Granularity and alignment of the size classes.
const GRANULE: usize = 16;
/// Largest block served from the free lists.
const MAX_SMALL: usize = 2048;
const CLASSES: usize = MAX_SMALL / GRANULE;

pub struct Pooled {
    /// Head of each class's free list; a free block holds the next pointer.
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: the guest has exactly one thread.
unsafe impl Sync for Pooled {}

impl Pooled {
    pub const fn new() -> Pooled {
        Pooled {
            free: UnsafeCell::new([ptr::null_mut(); CLASSES]),
        }
    }
}

/// The class of a small layout, or `None` for one the system serves.
fn class(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_SMALL && layout.align() <= GRANULE)
        .then(|| layout.size().max(1).div_ceil(GRANULE) - 1)
}

fn class_layout(class: usize) -> Layout {
    // SAFETY: the size is a non-zero multiple of the power-of-two alignment.
    unsafe { Layout::from_size_align_unchecked((class + 1) * GRANULE, GRANULE) }
}

unsafe impl GlobalAlloc for Pooled {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            // SAFETY: forwarded from the caller.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded; a free block's first word is the next
        // block of its list (written by `dealloc`), and every block is at
        // least one granule, so it has room for that pointer.
        unsafe {
            let heads = &mut *self.free.get();
            let head = heads[class];
            if head.is_null() {
                return System.alloc(class_layout(class));
            }
            heads[class] = head.cast::<*mut u8>().read();
            head
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class(layout) else {
            // SAFETY: forwarded from the caller.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: `block` came from `alloc` with the same layout, so from this
        // class, and is aligned for a pointer.
        unsafe {
            let heads = &mut *self.free.get();
            block.cast::<*mut u8>().write(heads[class]);
            heads[class] = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid layout for `new_size`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: both blocks belong to the system allocator.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a fresh block of the new layout, the common prefix
                // copied, the old block released with its own layout.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fall_into_sixteen_byte_classes() {
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class(layout(0, 1)), Some(0));
        assert_eq!(class(layout(16, 8)), Some(0));
        assert_eq!(class(layout(17, 8)), Some(1));
        assert_eq!(class(layout(256, 16)), Some(15));
        assert_eq!(class(layout(2048, 16)), Some(127));
        assert_eq!(class(layout(2049, 8)), None);
        assert_eq!(class(layout(64, 32)), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_reallocs_keep_contents() {
        let pooled = Pooled::new();
        let small = Layout::from_size_align(24, 8).unwrap();
        unsafe {
            let first = pooled.alloc(small);
            pooled.dealloc(first, small);
            let second = pooled.alloc(small);
            assert_eq!(first, second, "a freed block is served again");
            second.write_bytes(7, 24);
            let grown = pooled.realloc(second, small, 4000);
            assert!((0..24).all(|index| *grown.add(index) == 7));
            let large = Layout::from_size_align(4000, 8).unwrap();
            let shrunk = pooled.realloc(grown, large, 20);
            assert!((0..20).all(|index| *shrunk.add(index) == 7));
            pooled.dealloc(shrunk, Layout::from_size_align(20, 8).unwrap());
        }
    }
}
