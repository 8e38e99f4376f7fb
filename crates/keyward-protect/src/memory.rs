//! Storage for secret bytes: private keys, the keystore key, passphrases.
//!
//! All `SecretBuf`s of the process share one arena (see `arena.rs`) once
//! `init_memory` has chosen its backing. Before that, and when the operator
//! accepted insecure memory, they are zeroizing heap buffers.

use std::fmt;
use std::ptr::NonNull;
use std::slice;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::io::Errno;
use zeroize::Zeroize;

use crate::arena::{Arena, ArenaUsage, Backing, MapError};

/// Where secret bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMode {
    /// `memfd_secret(2)` pages, removed from the kernel's direct map.
    MemfdSecret,
    /// `mlock`ed anonymous pages marked `MADV_DONTDUMP`.
    Mlock,
    /// Ordinary heap pages: before `init_memory`, or after it with an
    /// explicit insecure opt-in.
    None,
}

impl MemoryMode {
    /// Returns the name `keyward status` prints for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryMode::MemfdSecret => "memfd_secret",
            MemoryMode::Mlock => "mlock",
            MemoryMode::None => "none",
        }
    }

    fn from_backing(backing: Backing) -> Self {
        match backing {
            Backing::MemfdSecret => MemoryMode::MemfdSecret,
            Backing::Mlock => MemoryMode::Mlock,
        }
    }
}

/// Failure to provide protected memory.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemoryError {
    /// The kernel refused every protected mapping at `init_memory`, or a new
    /// chunk for a reason other than a limit. The message gives each errno.
    Unavailable(String),
    /// The arena is full and the kernel refused to lock another chunk.
    Exhausted { requested: usize },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Unavailable(why) => write!(f, "protected memory is unavailable: {why}"),
            MemoryError::Exhausted { requested } => write!(
                f,
                "protected memory is exhausted: the kernel refused to lock memory for \
                 {requested} more bytes (RLIMIT_MEMLOCK, the memory cgroup or \
                 vm.max_map_count is reached); raise LimitMEMLOCK or hold fewer keys"
            ),
        }
    }
}

impl std::error::Error for MemoryError {}

/// Fallbacks that `init_memory` may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// Use ordinary heap memory when neither `memfd_secret` nor `mlock` works.
    pub allow_insecure: bool,
}

static ARENA: Mutex<Option<Arena>> = Mutex::new(None);

const MODE_NONE: u8 = 0;
const MODE_MEMFD_SECRET: u8 = 1;
const MODE_MLOCK: u8 = 2;

/// Copy of the arena's backing, readable without the lock.
static MODE: AtomicU8 = AtomicU8::new(MODE_NONE);

fn lock_arena() -> MutexGuard<'static, Option<Arena>> {
    // The arena's bookkeeping stays consistent across a panic elsewhere, and
    // dropping a SecretBuf must not panic, so a poisoned lock is still used.
    ARENA.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets up the process's secret arena: `memfd_secret(2)` pages where the
/// kernel has them, else `mlock`ed pages.
///
/// Returns the mode now in force. A second call after success returns the
/// same mode; a call after an insecure fallback tries again. When neither
/// backing works, returns `MemoryError::Unavailable` with the reasons, or
/// `MemoryMode::None` if `policy.allow_insecure` is set.
pub fn init_memory(policy: MemoryPolicy) -> Result<MemoryMode, MemoryError> {
    init_with_backings(policy, &[Backing::MemfdSecret, Backing::Mlock])
}

/// Like `init_memory`, but never tries `memfd_secret`, so tests can exercise
/// the `mlock` fallback on kernels that have `memfd_secret`.
#[doc(hidden)]
pub fn init_memory_without_memfd_secret(policy: MemoryPolicy) -> Result<MemoryMode, MemoryError> {
    init_with_backings(policy, &[Backing::Mlock])
}

fn init_with_backings(
    policy: MemoryPolicy,
    backings: &[Backing],
) -> Result<MemoryMode, MemoryError> {
    let mut arena = lock_arena();
    if let Some(existing) = arena.as_ref() {
        return Ok(MemoryMode::from_backing(existing.backing()));
    }

    let mut failures = Vec::new();
    for &backing in backings {
        match Arena::new(backing) {
            Ok(new) => {
                let mode = MemoryMode::from_backing(backing);
                MODE.store(mode_code(mode), Ordering::Release);
                *arena = Some(new);
                return Ok(mode);
            }
            Err(err) => failures.push((backing, err)),
        }
    }

    if policy.allow_insecure {
        return Ok(MemoryMode::None);
    }
    Err(MemoryError::Unavailable(explain_failures(&failures)))
}

fn mode_code(mode: MemoryMode) -> u8 {
    match mode {
        MemoryMode::None => MODE_NONE,
        MemoryMode::MemfdSecret => MODE_MEMFD_SECRET,
        MemoryMode::Mlock => MODE_MLOCK,
    }
}

/// Builds a message like "memfd_secret: ENOSYS; mlock: EPERM (RLIMIT_MEMLOCK
/// 64 KiB)" followed by what the operator can do.
fn explain_failures(failures: &[(Backing, MapError)]) -> String {
    let reasons: Vec<String> = failures
        .iter()
        .map(|(backing, err)| {
            let name = errno_name(err.errno);
            if err.call == backing.name() {
                format!("{}: {name}", backing.name())
            } else {
                format!("{}: {name} from {}", backing.name(), err.call)
            }
        })
        .collect();
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
    format!(
        "{} (RLIMIT_MEMLOCK {}). Raise the locked-memory limit (LimitMEMLOCK= in the \
         systemd unit, or ulimit -l), or run with --allow-insecure-memory to keep \
         secrets in ordinary memory that can reach swap",
        reasons.join("; "),
        format_bytes(limit),
    )
}

/// Converts a failure to add a chunk: `Exhausted` when a limit was reached,
/// else `Unavailable` with the failed call (EMFILE from memfd_secret when the
/// process is out of file descriptors, for example).
fn growth_error(backing: Backing, requested: usize, err: MapError) -> MemoryError {
    if err.is_resource_limit() {
        return MemoryError::Exhausted { requested };
    }
    MemoryError::Unavailable(format!(
        "{}: {} from {} while mapping another chunk for {requested} bytes",
        backing.name(),
        errno_name(err.errno),
        err.call
    ))
}

fn errno_name(errno: Errno) -> String {
    let name = match errno {
        Errno::NOSYS => "ENOSYS",
        Errno::PERM => "EPERM",
        Errno::AGAIN => "EAGAIN",
        Errno::NOMEM => "ENOMEM",
        Errno::INVAL => "EINVAL",
        Errno::MFILE => "EMFILE",
        Errno::NFILE => "ENFILE",
        Errno::ACCESS => "EACCES",
        _ => return format!("errno {}", errno.raw_os_error()),
    };
    name.to_owned()
}

/// Formats a resource limit in bytes; `None` is unlimited.
pub(crate) fn format_bytes(limit: Option<u64>) -> String {
    match limit {
        None => "unlimited".to_owned(),
        Some(bytes) if bytes >= 1 << 20 && bytes % (1 << 20) == 0 => format!("{} MiB", bytes >> 20),
        Some(bytes) if bytes >= 1 << 10 && bytes % (1 << 10) == 0 => format!("{} KiB", bytes >> 10),
        Some(bytes) => format!("{bytes} bytes"),
    }
}

/// How much of the calling thread's stack `scrub_stack` overwrites.
pub const STACK_SCRUB_BYTES: usize = 64 * 1024;

/// Overwrites `STACK_SCRUB_BYTES` of the calling thread's stack below the
/// caller's frame with zeros.
///
/// Moving a value is a plain copy, so parsing or building a key leaves
/// copies of it in the frames of functions that have returned (the
/// `ssh-key` parser and the by-value key structs it returns, for example).
/// Call this after such work, from a frame above it, once the key is in the
/// arena. It does not reach registers or copies in frames still live.
#[inline(never)]
pub fn scrub_stack() {
    let mut area = [0u8; STACK_SCRUB_BYTES];
    area.zeroize();
    std::hint::black_box(&area);
}

/// How much of the calling thread's stack `scrub_stack_after_operation`
/// overwrites: more than one signature or key agreement uses (an Ed25519
/// signature with SHA-512 needs a few KiB), and cheap enough for every
/// request.
pub const OPERATION_SCRUB_BYTES: usize = 16 * 1024;

/// Overwrites `OPERATION_SCRUB_BYTES` of the calling thread's stack below
/// the caller's frame with zeros: call it after a private-key operation
/// that ran in functions called from the caller's frame, so their frames'
/// copies of expanded keys and nonces do not outlive the request.
#[inline(never)]
pub fn scrub_stack_after_operation() {
    let mut area = [0u8; OPERATION_SCRUB_BYTES];
    area.zeroize();
    std::hint::black_box(&area);
}

/// Returns where new `SecretBuf`s are placed.
pub fn memory_mode() -> MemoryMode {
    match MODE.load(Ordering::Acquire) {
        MODE_MEMFD_SECRET => MemoryMode::MemfdSecret,
        MODE_MLOCK => MemoryMode::Mlock,
        _ => MemoryMode::None,
    }
}

/// Returns the arena's chunk count and sizes; all zero before `init_memory`
/// or in insecure mode.
pub fn arena_usage() -> ArenaUsage {
    lock_arena().as_ref().map(Arena::usage).unwrap_or_default()
}

enum Storage {
    Heap(Box<[u8]>),
    /// A block of the process arena, owned by this buffer alone.
    Arena {
        block: NonNull<u8>,
        len: usize,
    },
}

/// A fixed-length buffer of secret bytes, wiped when dropped.
///
/// `Debug` prints only the length.
pub struct SecretBuf {
    storage: Storage,
}

// SAFETY: a SecretBuf owns its block exclusively, like a Box<[u8]>. Shared
// references give out only `&[u8]`, and the arena's bookkeeping is behind a Mutex.
unsafe impl Send for SecretBuf {}
// SAFETY: as for Send; `&SecretBuf` allows only reads of the bytes.
unsafe impl Sync for SecretBuf {}

impl SecretBuf {
    /// Allocates `len` zero bytes in the arena, or on the heap before
    /// `init_memory` and in insecure mode.
    pub fn new(len: usize) -> Result<Self, MemoryError> {
        if len > 0 {
            let mut arena = lock_arena();
            if let Some(arena) = arena.as_mut() {
                let block = arena
                    .alloc(len)
                    .map_err(|err| growth_error(arena.backing(), len, err))?;
                return Ok(SecretBuf {
                    storage: Storage::Arena { block, len },
                });
            }
        }
        Ok(SecretBuf {
            storage: Storage::Heap(vec![0u8; len].into_boxed_slice()),
        })
    }

    /// Copies `bytes` into a new buffer. The caller wipes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, MemoryError> {
        let mut buf = Self::new(bytes.len())?;
        buf.expose_mut().copy_from_slice(bytes);
        Ok(buf)
    }

    pub fn len(&self) -> usize {
        match &self.storage {
            Storage::Heap(bytes) => bytes.len(),
            Storage::Arena { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Borrows the secret bytes.
    pub fn expose(&self) -> &[u8] {
        match &self.storage {
            Storage::Heap(bytes) => bytes,
            // SAFETY: the arena gave this buffer alone a block of at least
            // `len` bytes, and unmaps a chunk only after all its blocks are
            // freed, which for this block happens in `drop`.
            Storage::Arena { block, len } => unsafe { slice::from_raw_parts(block.as_ptr(), *len) },
        }
    }

    /// Borrows the secret bytes for writing.
    pub fn expose_mut(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Storage::Heap(bytes) => bytes,
            // SAFETY: as in `expose`, and `&mut self` makes this the only borrow.
            Storage::Arena { block, len } => unsafe {
                slice::from_raw_parts_mut(block.as_ptr(), *len)
            },
        }
    }

    /// Copies the buffer into new protected memory.
    pub fn try_clone(&self) -> Result<Self, MemoryError> {
        Self::from_slice(self.expose())
    }

    /// Returns true when the bytes are in the arena rather than on the heap.
    pub fn is_protected(&self) -> bool {
        matches!(self.storage, Storage::Arena { .. })
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        self.expose_mut().zeroize();
        if let Storage::Arena { block, len } = self.storage {
            if let Some(arena) = lock_arena().as_mut() {
                // SAFETY: the block came from `alloc(len)`, this drop runs
                // once, and `self` cannot be used after it.
                unsafe { arena.free(block, len) };
            }
        }
    }
}

impl fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBuf([REDACTED; {}])", self.len())
    }
}

/// A value of type `T` in the secret arena, zeroized and dropped in place.
///
/// Meant for key types that are plain data, such as ed25519-dalek's
/// `SigningKey`, p256's `SigningKey` or x25519-dalek's `StaticSecret`. Heap
/// memory that `T` itself owns (a `Vec` field) stays on the ordinary heap.
/// Before `init_memory` and in insecure mode the value is in a `Box`.
///
/// `Debug` prints only the type name.
pub struct SecretBox<T: Zeroize> {
    storage: BoxStorage<T>,
}

enum BoxStorage<T> {
    Heap(Box<T>),
    /// A block of the process arena holding one initialised `T`.
    Arena(NonNull<T>),
}

// SAFETY: a SecretBox owns its value exclusively, like a Box<T>, and the
// arena's bookkeeping is behind a Mutex.
unsafe impl<T: Zeroize + Send> Send for SecretBox<T> {}
// SAFETY: `&SecretBox<T>` gives out only `&T`, so sharing it is sharing `&T`.
unsafe impl<T: Zeroize + Sync> Sync for SecretBox<T> {}

impl<T: Zeroize> SecretBox<T> {
    /// Moves `value` into the arena.
    ///
    /// NOTE: a move is a plain copy, so the bytes of `value` also remain in
    /// the caller's stack frame until overwritten. Build the value right
    /// before this call, in a frame that returns soon.
    pub fn new(value: T) -> Result<Self, MemoryError> {
        const { assert!(std::mem::align_of::<T>() <= crate::arena::BLOCK_ALIGN) };
        let size = std::mem::size_of::<T>();
        if size > 0 {
            let mut arena = lock_arena();
            if let Some(arena) = arena.as_mut() {
                let block = arena
                    .alloc(size)
                    .map_err(|err| growth_error(arena.backing(), size, err))?;
                let slot = block.cast::<T>();
                // SAFETY: the block has room for `size` bytes, is aligned to 16
                // bytes (at least T's alignment, checked above) and is owned by
                // nothing else, so writing a T there is sound.
                unsafe { slot.as_ptr().write(value) };
                return Ok(SecretBox {
                    storage: BoxStorage::Arena(slot),
                });
            }
        }
        Ok(SecretBox {
            storage: BoxStorage::Heap(Box::new(value)),
        })
    }

    /// Borrows the value.
    pub fn expose(&self) -> &T {
        match &self.storage {
            BoxStorage::Heap(value) => value,
            // SAFETY: the slot contains an initialised T owned by this box until drop.
            BoxStorage::Arena(slot) => unsafe { slot.as_ref() },
        }
    }

    /// Borrows the value for writing.
    pub fn expose_mut(&mut self) -> &mut T {
        match &mut self.storage {
            BoxStorage::Heap(value) => value,
            // SAFETY: as in `expose`, and `&mut self` makes this the only borrow.
            BoxStorage::Arena(slot) => unsafe { slot.as_mut() },
        }
    }

    /// Returns true when the value is in the arena rather than on the heap.
    pub fn is_protected(&self) -> bool {
        matches!(self.storage, BoxStorage::Arena(_))
    }
}

impl<T: Zeroize> Drop for SecretBox<T> {
    fn drop(&mut self) {
        self.expose_mut().zeroize();
        if let BoxStorage::Arena(slot) = self.storage {
            // SAFETY: the slot contains an initialised T that nothing else will
            // use or drop, so it is dropped exactly once here.
            unsafe { std::ptr::drop_in_place(slot.as_ptr()) };
            if let Some(arena) = lock_arena().as_mut() {
                // SAFETY: the slot came from `alloc(size_of::<T>())` and its
                // value was dropped above; this drop runs once.
                unsafe { arena.free(slot.cast(), std::mem::size_of::<T>()) };
            }
        }
    }
}

impl<T: Zeroize> fmt::Debug for SecretBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBox<{}>([REDACTED])", std::any::type_name::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn debug_hides_bytes() {
        let buf = SecretBuf::from_slice(b"hunter2").unwrap();
        assert_eq!(format!("{buf:?}"), "SecretBuf([REDACTED; 7])");
    }

    #[test]
    fn new_buffer_is_zeroed() {
        let buf = SecretBuf::new(100).unwrap();
        assert_eq!(buf.expose(), &[0u8; 100][..]);
    }

    #[test]
    fn empty_buffer_allocates_nothing() {
        let buf = SecretBuf::new(0).unwrap();
        assert!(buf.is_empty());
        assert!(!buf.is_protected());
    }

    #[test]
    fn clone_copies_bytes() {
        let mut buf = SecretBuf::new(33).unwrap();
        buf.expose_mut()[32] = 7;
        let copy = buf.try_clone().unwrap();
        assert_eq!(copy.expose(), buf.expose());
    }

    #[test]
    fn unavailable_message_names_errno_and_fix() {
        let failures = [
            (
                Backing::MemfdSecret,
                MapError {
                    call: "memfd_secret",
                    errno: Errno::NOSYS,
                },
            ),
            (
                Backing::Mlock,
                MapError {
                    call: "mlock",
                    errno: Errno::PERM,
                },
            ),
        ];
        let message = explain_failures(&failures);
        assert!(
            message.starts_with("memfd_secret: ENOSYS; mlock: EPERM (RLIMIT_MEMLOCK "),
            "{message}"
        );
        assert!(message.contains("LimitMEMLOCK="), "{message}");
        assert!(message.contains("--allow-insecure-memory"), "{message}");
    }

    #[test]
    fn growth_error_separates_limits_from_failures() {
        let limit = MapError {
            call: "mmap",
            errno: Errno::AGAIN,
        };
        let error = growth_error(Backing::MemfdSecret, 64, limit);
        assert!(
            matches!(error, MemoryError::Exhausted { requested: 64 }),
            "{error:?}"
        );

        let no_fds = MapError {
            call: "memfd_secret",
            errno: Errno::MFILE,
        };
        let message = growth_error(Backing::MemfdSecret, 64, no_fds).to_string();
        assert!(
            message.contains("memfd_secret: EMFILE from memfd_secret"),
            "{message}"
        );
    }

    #[test]
    fn format_bytes_uses_binary_units() {
        assert_eq!(format_bytes(None), "unlimited");
        assert_eq!(format_bytes(Some(64 << 10)), "64 KiB");
        assert_eq!(format_bytes(Some(8 << 20)), "8 MiB");
        assert_eq!(format_bytes(Some(1000)), "1000 bytes");
        assert_eq!(format_bytes(Some(0)), "0 bytes");
    }

    #[derive(Zeroize)]
    struct CountsDrops {
        bytes: [u8; 40],
        #[zeroize(skip)]
        drops: Arc<AtomicUsize>,
    }

    impl Drop for CountsDrops {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn secret_box_drops_value_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let boxed = SecretBox::new(CountsDrops {
            bytes: [9; 40],
            drops: drops.clone(),
        })
        .unwrap();
        assert_eq!(boxed.expose().bytes, [9; 40]);
        drop(boxed);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn secret_box_debug_hides_value() {
        let boxed = SecretBox::new([1u8; 32]).unwrap();
        assert_eq!(format!("{boxed:?}"), "SecretBox<[u8; 32]>([REDACTED])");
    }
}
