//! The block pool: one region of fixed-size blocks, mapped once at start-up and shared by every
//! stream and every core (DESIGN.md, "Shared block pool").
//!
//! The region is registered with io_uring as fixed buffers, one buffer per block, so a block's
//! index is also its `buf_index` for `ReadFixed` and `SendZc`. Free blocks sit in
//! a lock-free queue; a block is taken by a stream's ingest side and returned only when every core
//! is past it (see [`crate::window`]). This module does no I/O beyond the one `mmap`.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam::queue::ArrayQueue;
use thiserror::Error;

/// The kernel accepts at most this many registered buffers per ring (IORING_MAX_REG_BUFFERS).
pub const MAX_BLOCKS: usize = 1 << 14;
/// Offsets inside a block are packed into 24 bits in places (see `window::pack_pos`).
pub const MAX_BLOCK_SIZE: usize = 1 << 24;
/// A block smaller than this cannot hold a useful read.
pub const MIN_BLOCK_SIZE: usize = 4096;

#[derive(Debug, Error)]
pub enum PoolError {
    #[error(
        "block size {0} is outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} or not a multiple of 4096"
    )]
    BlockSize(usize),
    #[error("pool of {0} blocks is outside 2..={MAX_BLOCKS}")]
    BlockCount(usize),
    #[error("cannot map the {mib} MiB block pool: {source}")]
    Map {
        mib: usize,
        #[source]
        source: std::io::Error,
    },
}

/// The shared region of blocks.
pub struct BlockPool {
    base: NonNull<u8>,
    block_size: usize,
    blocks: usize,
    free: ArrayQueue<u32>,
    in_use: AtomicUsize,
}

// SAFETY: the pool hands out raw block memory; who writes a block is decided by the stream
// window protocol (only the owning stream's single writer writes a block it has taken and not yet
// published), so sharing the pool handle between threads is sound.
unsafe impl Send for BlockPool {}
// SAFETY: as above; all shared bookkeeping is atomic.
unsafe impl Sync for BlockPool {}

impl BlockPool {
    /// Maps `blocks` blocks of `block_size` bytes. Pages are touched at once (MAP_POPULATE) so
    /// the first frames of a stream do not pay for page faults.
    pub fn new(block_size: usize, blocks: usize) -> Result<Self, PoolError> {
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
            || !block_size.is_multiple_of(4096)
        {
            return Err(PoolError::BlockSize(block_size));
        }
        if !(2..=MAX_BLOCKS).contains(&blocks) {
            return Err(PoolError::BlockCount(blocks));
        }
        let len = block_size * blocks;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PoolError::Map {
                mib: len >> 20,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(ptr.cast::<u8>()).expect("mmap never returns null on success");
        let free = ArrayQueue::new(blocks);
        for i in 0..blocks as u32 {
            free.push(i).expect("queue sized for every block");
        }
        Ok(Self {
            base,
            block_size,
            blocks,
            free,
            in_use: AtomicUsize::new(0),
        })
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn blocks(&self) -> usize {
        self.blocks
    }

    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Bytes of the whole region.
    pub fn len(&self) -> usize {
        self.block_size * self.blocks
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Takes a free block, or `None` when every block is in use.
    pub fn alloc(&self) -> Option<u32> {
        let b = self.free.pop()?;
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Some(b)
    }

    /// Returns a block. The caller guarantees nobody still reads or sends from it.
    pub fn free(&self, block: u32) {
        debug_assert!((block as usize) < self.blocks);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        self.free
            .push(block)
            .expect("a block is freed at most once, so the queue never overflows");
    }

    /// Start of block `block`.
    pub fn block_ptr(&self, block: u32) -> *mut u8 {
        assert!((block as usize) < self.blocks, "block index out of range");
        // SAFETY: in bounds of the mapping, checked above.
        unsafe { self.base.as_ptr().add(block as usize * self.block_size) }
    }

    /// One iovec per block, for `register_buffers` (buf_index == block index).
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.blocks as u32)
            .map(|b| libc::iovec {
                iov_base: self.block_ptr(b).cast(),
                iov_len: self.block_size,
            })
            .collect()
    }

    /// Copies `bytes` into block `block` at `offset`. Used only for the few body bytes that
    /// arrived together with a source's request head, before any frame of them is published.
    pub fn write(&self, block: u32, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.block_size);
        // SAFETY: the range is inside the block (asserted); the caller owns the unpublished tail.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.block_ptr(block).add(offset),
                bytes.len(),
            )
        }
    }

    /// A mutable view of an unpublished range of a block.
    ///
    /// # Safety
    /// The caller must be the only one accessing this range (the stream's writer, before
    /// publishing it), and no kernel operation may be writing it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, block: u32, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset + len <= self.block_size);
        // SAFETY: in bounds (asserted); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.block_ptr(block).add(offset), len) }
    }

    /// A shared view of a published range (tests and the MPEG-TS scanner).
    ///
    /// # Safety
    /// The range must be published and the block pinned (not freed while the slice lives).
    pub unsafe fn slice(&self, block: u32, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.block_size);
        // SAFETY: in bounds (asserted); pinning is the caller's contract.
        unsafe { std::slice::from_raw_parts(self.block_ptr(block).add(offset), len) }
    }
}

impl Drop for BlockPool {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `new`; no reference outlives the pool.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn rejects_bad_geometry() {
        assert!(matches!(
            BlockPool::new(1000, 4),
            Err(PoolError::BlockSize(1000))
        ));
        assert!(matches!(
            BlockPool::new(4096, 1),
            Err(PoolError::BlockCount(1))
        ));
        assert!(matches!(
            BlockPool::new(4096, MAX_BLOCKS + 1),
            Err(PoolError::BlockCount(_))
        ));
    }

    #[test]
    fn blocks_are_disjoint_and_writable() {
        let pool = BlockPool::new(4096, 4).unwrap();
        for b in 0..4 {
            pool.write(b, 0, &[b as u8; 4096]);
        }
        for b in 0..4 {
            // SAFETY: test owns the whole pool.
            let s = unsafe { pool.slice(b, 0, 4096) };
            assert!(s.iter().all(|&x| x == b as u8));
        }
        assert_eq!(pool.iovecs().len(), 4);
    }

    proptest! {
        #[test]
        fn alloc_free_never_hands_out_a_block_twice(ops in proptest::collection::vec(any::<bool>(), 1..200)) {
            let pool = BlockPool::new(4096, 8).unwrap();
            let mut held = Vec::new();
            let mut set = HashSet::new();
            for take in ops {
                if take {
                    match pool.alloc() {
                        Some(b) => { prop_assert!(set.insert(b)); held.push(b); }
                        None => prop_assert_eq!(held.len(), 8),
                    }
                } else if let Some(b) = held.pop() {
                    set.remove(&b);
                    pool.free(b);
                }
                prop_assert_eq!(pool.in_use(), held.len());
            }
        }
    }
}
