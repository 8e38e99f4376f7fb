//! The secret arena: a few large locked mappings ("chunks") carved into
//! 16-byte blocks, so that thousands of keys cost a handful of mappings and
//! fit the default `RLIMIT_MEMLOCK` and `vm.max_map_count`.
//!
//! Each chunk keeps a first-fit free list ordered by offset. Freed blocks are
//! zeroized at once and merged with free neighbours, so every block the arena
//! hands out reads as zeros.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::slice;

use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};
use zeroize::Zeroize;

/// Size of an ordinary chunk. Larger requests get a chunk of their own.
pub(crate) const CHUNK_SIZE: usize = 256 * 1024;

/// Granularity and alignment of blocks.
pub(crate) const BLOCK_ALIGN: usize = 16;

/// Protection of a chunk's pages against other readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// `memfd_secret(2)`: removed from the kernel's direct map, locked, not dumped.
    MemfdSecret,
    /// Private anonymous pages with `mlock`, `MADV_DONTDUMP` and `MADV_WIPEONFORK`.
    Mlock,
}

impl Backing {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backing::MemfdSecret => "memfd_secret",
            Backing::Mlock => "mlock",
        }
    }
}

/// A system call that failed while mapping a chunk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MapError {
    pub(crate) call: &'static str,
    pub(crate) errno: Errno,
}

impl MapError {
    fn new(call: &'static str, errno: Errno) -> Self {
        MapError { call, errno }
    }

    fn last(call: &'static str) -> Self {
        let raw = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        MapError {
            call,
            errno: Errno::from_raw_os_error(raw),
        }
    }

    /// Returns true when a smaller mapping might still succeed: the
    /// locked-memory limit, a memory cgroup or the map count was reached, not
    /// a missing feature.
    pub(crate) fn is_resource_limit(&self) -> bool {
        matches!(self.errno, Errno::AGAIN | Errno::NOMEM | Errno::PERM)
    }
}

/// Sizes of the arena, for status output and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaUsage {
    /// Number of chunk mappings.
    pub chunks: usize,
    /// Bytes mapped and locked in all chunks.
    pub mapped_bytes: usize,
    /// Bytes handed out in blocks, after rounding to 16 bytes.
    pub used_bytes: usize,
}

struct Chunk {
    base: NonNull<u8>,
    len: usize,
    /// Free blocks as offset → length. Both are multiples of `BLOCK_ALIGN`,
    /// and no two entries touch because `give_back` merges neighbours.
    free: BTreeMap<usize, usize>,
    used: usize,
}

// SAFETY: a chunk is a region of process memory with no thread affinity; the
// arena's owner serialises every access to the bookkeeping behind a Mutex.
unsafe impl Send for Chunk {}

impl Chunk {
    fn new(base: NonNull<u8>, len: usize) -> Self {
        let mut free = BTreeMap::new();
        free.insert(0, len);
        Chunk {
            base,
            len,
            free,
            used: 0,
        }
    }

    fn offset_of(&self, block: NonNull<u8>) -> Option<usize> {
        let offset = (block.as_ptr() as usize).checked_sub(self.base.as_ptr() as usize)?;
        (offset < self.len).then_some(offset)
    }

    /// Takes the first free block of at least `size` bytes and returns its offset.
    fn take(&mut self, size: usize) -> Option<usize> {
        let (&offset, &len) = self.free.iter().find(|&(_, &len)| len >= size)?;
        self.free.remove(&offset);
        if len > size {
            self.free.insert(offset + size, len - size);
        }
        self.used += size;
        Some(offset)
    }

    /// Returns a block to the free list, merging it with free neighbours.
    fn give_back(&mut self, offset: usize, size: usize) {
        let mut start = offset;
        let mut len = size;

        let before = self.free.range(..offset).next_back().map(|(&o, &l)| (o, l));
        if let Some((before_offset, before_len)) = before {
            if before_offset + before_len == offset {
                self.free.remove(&before_offset);
                start = before_offset;
                len += before_len;
            }
        }
        if let Some(after_len) = self.free.remove(&(offset + size)) {
            len += after_len;
        }

        self.free.insert(start, len);
        self.used -= size;
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.used > 0 {
            // Only a dropped arena with live blocks gets here, which the global
            // arena never is. Free blocks are zero already.
            // SAFETY: the chunk owns base..base+len, mapped read-write in map_chunk.
            unsafe { slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }.zeroize();
        }
        // SAFETY: base..base+len is a mapping this chunk created and nothing
        // else refers to it once the chunk is dropped.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Chunks of one backing and the blocks carved from them.
pub(crate) struct Arena {
    backing: Backing,
    chunks: Vec<Chunk>,
    page_size: usize,
}

impl Arena {
    /// Creates an arena and maps its first chunk, which proves that the
    /// backing works under the current limits.
    pub(crate) fn new(backing: Backing) -> Result<Self, MapError> {
        let mut arena = Arena {
            backing,
            chunks: Vec::new(),
            page_size: rustix::param::page_size(),
        };
        arena.grow(BLOCK_ALIGN)?;
        Ok(arena)
    }

    pub(crate) fn backing(&self) -> Backing {
        self.backing
    }

    /// Allocates a zeroed block of at least `len` bytes, aligned to 16 bytes.
    pub(crate) fn alloc(&mut self, len: usize) -> Result<NonNull<u8>, MapError> {
        let size = round_up(len.max(1), BLOCK_ALIGN).ok_or(MapError::new("alloc", Errno::NOMEM))?;

        for chunk in &mut self.chunks {
            if let Some(offset) = chunk.take(size) {
                return Ok(block_at(chunk, offset));
            }
        }

        let chunk = self.grow(size)?;
        let offset = chunk
            .take(size)
            .ok_or(MapError::new("alloc", Errno::NOMEM))?;
        Ok(block_at(chunk, offset))
    }

    /// Zeroizes a block and returns it to its chunk.
    ///
    /// # Safety
    ///
    /// `block` and `len` must be a pointer returned by `alloc` of this arena
    /// and the length passed to it, not freed before, and no reference to
    /// the block may be used afterwards.
    pub(crate) unsafe fn free(&mut self, block: NonNull<u8>, len: usize) {
        let Some(size) = round_up(len.max(1), BLOCK_ALIGN) else {
            return;
        };
        let Some(index) = self
            .chunks
            .iter()
            .position(|c| c.offset_of(block).is_some())
        else {
            debug_assert!(false, "block is in no chunk of this arena");
            return;
        };
        let chunk = &mut self.chunks[index];
        let Some(offset) = chunk.offset_of(block) else {
            return;
        };
        debug_assert!(offset % BLOCK_ALIGN == 0 && offset + size <= chunk.len);

        // SAFETY: the block is `size` bytes inside this chunk's mapping
        // (rounded as in `alloc`), and its owner has given it up.
        unsafe { slice::from_raw_parts_mut(block.as_ptr(), size) }.zeroize();
        chunk.give_back(offset, size);

        // Keep one empty ordinary chunk for the next allocation; unmap the
        // others so their locked memory goes back to the limit.
        let oversized = chunk.len > CHUNK_SIZE;
        let empty_chunks = self.chunks.iter().filter(|c| c.used == 0).count();
        if self.chunks[index].used == 0 && self.chunks.len() > 1 && (oversized || empty_chunks > 1)
        {
            self.chunks.swap_remove(index);
        }
    }

    pub(crate) fn usage(&self) -> ArenaUsage {
        ArenaUsage {
            chunks: self.chunks.len(),
            mapped_bytes: self.chunks.iter().map(|c| c.len).sum(),
            used_bytes: self.chunks.iter().map(|c| c.used).sum(),
        }
    }

    /// Maps a chunk that can hold `size` bytes. Under a resource limit it
    /// halves the chunk down to the smallest page multiple that fits, so the
    /// arena can use the last pages the limit allows.
    fn grow(&mut self, size: usize) -> Result<&mut Chunk, MapError> {
        let min = round_up(size, self.page_size).ok_or(MapError::new("alloc", Errno::NOMEM))?;
        let mut len = CHUNK_SIZE.max(min);
        loop {
            match map_chunk(self.backing, len) {
                Ok(base) => {
                    self.chunks.push(Chunk::new(base, len));
                    let last = self.chunks.len() - 1;
                    return Ok(&mut self.chunks[last]);
                }
                Err(err) if err.is_resource_limit() && len > min => {
                    len = round_up(len / 2, self.page_size).unwrap_or(min).max(min);
                }
                Err(err) => return Err(err),
            }
        }
    }
}

fn block_at(chunk: &Chunk, offset: usize) -> NonNull<u8> {
    // SAFETY: `take` returned an offset inside the chunk, so the sum stays in
    // the mapping and is non-null.
    unsafe { NonNull::new_unchecked(chunk.base.as_ptr().add(offset)) }
}

fn round_up(value: usize, multiple: usize) -> Option<usize> {
    Some(value.checked_add(multiple - 1)? / multiple * multiple)
}

fn map_chunk(backing: Backing, len: usize) -> Result<NonNull<u8>, MapError> {
    let base = match backing {
        Backing::MemfdSecret => map_secretmem(len)?,
        Backing::Mlock => map_locked_anonymous(len)?,
    };
    NonNull::new(base.cast()).ok_or(MapError::new("mmap", Errno::NOMEM))
}

/// Maps `len` bytes of `memfd_secret(2)` memory. The kernel marks the mapping
/// locked and not dumpable itself, and counts it against `RLIMIT_MEMLOCK`.
fn map_secretmem(len: usize) -> Result<*mut c_void, MapError> {
    // memsec 0.7 has a memfd_secret allocator, but it maps guard pages per
    // allocation, ignores ftruncate errors and leaks the descriptor when mmap
    // fails, so the arena makes the three calls itself.
    // SAFETY: memfd_secret takes one flags word and only creates a descriptor.
    let ret = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC as libc::c_uint) };
    if ret < 0 {
        return Err(MapError::last("memfd_secret"));
    }
    // SAFETY: the kernel has just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(ret as i32) };

    rustix::fs::ftruncate(&fd, len as u64).map_err(|e| MapError::new("ftruncate", e))?;

    let prot = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: a new mapping at an address the kernel chooses overlaps no
    // existing Rust object.
    let base = unsafe { rustix::mm::mmap(ptr::null_mut(), len, prot, MapFlags::SHARED, &fd, 0) }
        .map_err(|e| MapError::new("mmap", e))?;
    // The mapping keeps the file alive after `fd` closes.

    // A forked child gets no copy of the mapping at all, since MADV_WIPEONFORK
    // applies only to private anonymous memory.
    // SAFETY: base..base+len is the mapping created above.
    if let Err(e) = unsafe { rustix::mm::madvise(base, len, Advice::LinuxDontFork) } {
        // SAFETY: the mapping was created above and nothing refers to it yet.
        let _ = unsafe { rustix::mm::munmap(base, len) };
        return Err(MapError::new("madvise(MADV_DONTFORK)", e));
    }
    Ok(base)
}

/// Maps `len` bytes of private anonymous memory, excluded from core dumps,
/// wiped in forked children and locked into RAM.
fn map_locked_anonymous(len: usize) -> Result<*mut c_void, MapError> {
    let prot = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: a new mapping at an address the kernel chooses overlaps no
    // existing Rust object.
    let base = unsafe { rustix::mm::mmap_anonymous(ptr::null_mut(), len, prot, MapFlags::PRIVATE) }
        .map_err(|e| MapError::new("mmap", e))?;

    let protect = || -> Result<(), MapError> {
        // SAFETY: base..base+len is the mapping created above, with no data yet.
        unsafe { rustix::mm::madvise(base, len, Advice::LinuxDontDump) }
            .map_err(|e| MapError::new("madvise(MADV_DONTDUMP)", e))?;
        // MADV_WIPEONFORK exists since Linux 4.14, and older kernels return EINVAL.
        // SAFETY: as above; the advice changes only what a forked child sees.
        match unsafe { rustix::mm::madvise(base, len, Advice::LinuxWipeOnFork) } {
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(MapError::new("madvise(MADV_WIPEONFORK)", e)),
        }
        // SAFETY: as above; mlock only pins the pages of this mapping.
        unsafe { rustix::mm::mlock(base, len) }.map_err(|e| MapError::new("mlock", e))
    };

    if let Err(err) = protect() {
        // SAFETY: the mapping was created above and nothing refers to it yet.
        let _ = unsafe { rustix::mm::munmap(base, len) };
        return Err(err);
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> Arena {
        Arena::new(Backing::MemfdSecret)
            .or_else(|_| Arena::new(Backing::Mlock))
            .expect("neither memfd_secret nor mlock works in this test process")
    }

    /// Reads a block's bytes after it was freed, which safe code cannot do.
    fn read_raw(block: NonNull<u8>, len: usize) -> Vec<u8> {
        // SAFETY: the block lies in a chunk that is still mapped (the arena
        // keeps its last empty chunk) and no reference to it is alive.
        unsafe { slice::from_raw_parts(block.as_ptr(), len) }.to_vec()
    }

    fn release(arena: &mut Arena, block: NonNull<u8>, len: usize) {
        // SAFETY: every test frees each block it allocated once, with its
        // allocation length, and reads freed blocks only through `read_raw`.
        unsafe { arena.free(block, len) };
    }

    fn write_raw(block: NonNull<u8>, len: usize, byte: u8) {
        // SAFETY: the block was allocated with at least `len` bytes and is
        // referenced nowhere else.
        unsafe { ptr::write_bytes(block.as_ptr(), byte, len) };
    }

    #[test]
    fn alloc_rounds_and_aligns_to_16_bytes() {
        let mut arena = arena();
        let a = arena.alloc(1).unwrap();
        let b = arena.alloc(17).unwrap();
        let c = arena.alloc(32).unwrap();

        assert_eq!(a.as_ptr() as usize % BLOCK_ALIGN, 0);
        assert_eq!(b.as_ptr() as usize - a.as_ptr() as usize, 16);
        assert_eq!(c.as_ptr() as usize - b.as_ptr() as usize, 32);
        assert_eq!(arena.usage().used_bytes, 16 + 32 + 32);

        release(&mut arena, a, 1);
        release(&mut arena, b, 17);
        release(&mut arena, c, 32);
        assert_eq!(arena.usage().used_bytes, 0);
    }

    #[test]
    fn freed_block_is_zeroized_and_reused() {
        let mut arena = arena();
        let first = arena.alloc(64).unwrap();
        write_raw(first, 64, 0xA5);
        let _neighbour = arena.alloc(64).unwrap();

        release(&mut arena, first, 64);
        assert_eq!(read_raw(first, 64), vec![0u8; 64]);

        let again = arena.alloc(48).unwrap();
        assert_eq!(again, first, "first fit should reuse the freed block");
        assert_eq!(read_raw(again, 48), vec![0u8; 48]);
    }

    #[test]
    fn free_merges_neighbouring_blocks() {
        let mut arena = arena();
        let blocks: Vec<_> = (0..4).map(|_| arena.alloc(32).unwrap()).collect();
        let chunk_len = arena.usage().mapped_bytes;

        // Free out of order so merging happens both before and after.
        release(&mut arena, blocks[1], 32);
        release(&mut arena, blocks[3], 32);
        release(&mut arena, blocks[2], 32);
        release(&mut arena, blocks[0], 32);

        let chunk = &arena.chunks[0];
        assert_eq!(chunk.free.len(), 1, "free list: {:?}", chunk.free);
        assert_eq!(chunk.free.get(&0), Some(&chunk_len));

        // The whole chunk is one block again.
        let whole = arena.alloc(chunk_len).unwrap();
        assert_eq!(whole, blocks[0]);
        assert_eq!(arena.usage().chunks, 1);
        release(&mut arena, whole, chunk_len);
    }

    #[test]
    fn large_request_gets_own_chunk_and_unmaps() {
        let mut arena = arena();
        let small = arena.alloc(64).unwrap();
        let large_len = CHUNK_SIZE + 1;
        let large = arena.alloc(large_len).unwrap();
        let usage = arena.usage();
        assert_eq!(usage.chunks, 2);
        assert!(usage.mapped_bytes >= CHUNK_SIZE + large_len);

        write_raw(large, large_len, 0x5A);
        release(&mut arena, large, large_len);
        release(&mut arena, small, 64);

        // One empty chunk stays mapped for the next allocation.
        assert_eq!(arena.usage().chunks, 1);
        assert_eq!(arena.usage().used_bytes, 0);
    }

    #[test]
    fn grows_new_chunk_when_full() {
        let mut arena = arena();
        let per_chunk = CHUNK_SIZE / 64;
        let blocks: Vec<_> = (0..per_chunk + 1)
            .map(|_| arena.alloc(64).unwrap())
            .collect();
        assert_eq!(arena.usage().chunks, 2);
        assert_eq!(arena.usage().used_bytes, (per_chunk + 1) * 64);

        for block in blocks {
            release(&mut arena, block, 64);
        }
        assert_eq!(arena.usage().chunks, 1);
    }

    #[test]
    fn mlock_backing_maps_locked_chunk() {
        let mut arena = match Arena::new(Backing::Mlock) {
            Ok(arena) => arena,
            Err(err) => {
                eprintln!(
                    "skipped: mlock is not permitted here ({} from {})",
                    err.errno, err.call
                );
                return;
            }
        };
        let block = arena.alloc(40).unwrap();
        assert_eq!(read_raw(block, 40), vec![0u8; 40]);
        release(&mut arena, block, 40);
        assert_eq!(arena.backing(), Backing::Mlock);
    }
}
