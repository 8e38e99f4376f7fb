//! Process-wide behaviour of the arena and the hardening calls.
//!
//! The arena, resource limits and the dumpable flag belong to the whole
//! process, so each test re-runs this test binary with only itself selected
//! and `KEYWARD_PROTECT_CHILD` set, and the child does the work. Tests that
//! need a non-root uid run the child as uid 65534 when the suite runs as root.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use keyward_protect::{
    arena_usage, harden_process, init_memory, lock_all_memory, measure, memory_mode, MemoryError,
    MemoryMode, MemoryPolicy, SecretBox, SecretBuf,
};

const CHILD_ENV: &str = "KEYWARD_PROTECT_CHILD";
const NOBODY: u32 = 65534;
const STRICT: MemoryPolicy = MemoryPolicy {
    allow_insecure: false,
};

/// Which user runs a child.
#[derive(Clone, Copy)]
enum RunAs {
    /// The user running the suite.
    Same,
    /// Uid and gid 65534 when the suite runs as root, else the same user.
    Unprivileged,
}

/// Defines a test whose body runs in a fresh child process.
macro_rules! child_test {
    ($name:ident, $run_as:expr, $body:block) => {
        #[test]
        fn $name() {
            if std::env::var(CHILD_ENV).as_deref() == Ok(stringify!($name)) {
                $body
                return;
            }
            if let Some(output) = run_child(stringify!($name), $run_as) {
                check_child(stringify!($name), &output);
            }
        }
    };
}

/// Runs one test of this binary in a child process. Returns None, after
/// printing why, when uid 65534 cannot execute the test binary (a target
/// directory under a private home, for example).
fn run_child(test: &str, run_as: RunAs) -> Option<Output> {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test);
    let drop_root = matches!(run_as, RunAs::Unprivileged) && is_root();
    if drop_root {
        // Setting the uid as root also clears the supplementary groups.
        command.uid(NOBODY).gid(NOBODY);
    }
    match command.output() {
        Ok(output) => Some(output),
        Err(err) if drop_root && err.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("{test}: skipped: uid {NOBODY} cannot execute the test binary ({err})");
            None
        }
        Err(err) => panic!("cannot run the child for {test}: {err}"),
    }
}

fn check_child(test: &str, output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Pass on measured figures and skip reasons from the child.
    for line in stdout.lines().chain(stderr.lines()) {
        // The harness prints "test NAME ... " before the first line of output.
        let start = ["skipped:", "measured:", "note:"]
            .iter()
            .filter_map(|tag| line.find(tag))
            .min();
        if let Some(start) = start {
            eprintln!("{test}: {}", &line[start..]);
        }
    }
    assert!(
        output.status.success(),
        "child {test} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "child {test} ran no test:\n{stdout}\n{stderr}"
    );
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn set_memlock_limit(bytes: u64) -> bool {
    let limit = rustix::process::Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    match rustix::process::setrlimit(rustix::process::Resource::Memlock, limit) {
        Ok(()) => true,
        Err(err) => {
            println!("skipped: cannot set RLIMIT_MEMLOCK to {bytes} bytes ({err})");
            false
        }
    }
}

fn memfd_secret_works() -> bool {
    // SAFETY: memfd_secret takes a flags word and only creates a descriptor,
    // which is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_secret, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd was just returned by the kernel and is owned by nothing else.
    unsafe { libc::close(fd as i32) };
    true
}

fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn random_bytes(out: &mut [u8]) {
    File::open("/dev/urandom").unwrap().read_exact(out).unwrap();
}

/// A byte string kept only as two random halves, `split[i] ^ mask[i]`, so the
/// scanner can look for it without the string itself existing in its memory.
struct Needle {
    split: Vec<u8>,
    mask: Vec<u8>,
}

impl Needle {
    fn of(bytes: &[u8]) -> Needle {
        let mut mask = vec![0u8; bytes.len()];
        random_bytes(&mut mask);
        let split = bytes.iter().zip(&mask).map(|(b, m)| b ^ m).collect();
        Needle { split, mask }
    }

    fn matches_at(&self, haystack: &[u8], at: usize) -> bool {
        haystack.len() >= at + self.split.len()
            && self
                .split
                .iter()
                .zip(&self.mask)
                .enumerate()
                .all(|(i, (s, m))| haystack[at + i] == s ^ m)
    }

    fn count_in(&self, haystack: &[u8]) -> usize {
        let first = self.split[0] ^ self.mask[0];
        (0..haystack.len())
            .filter(|&at| haystack[at] == first && self.matches_at(haystack, at))
            .count()
    }
}

/// Result of reading every readable mapping through /proc/self/mem.
struct Scan {
    hits: Vec<usize>,
    failed_ranges: Vec<(u64, u64, i32)>,
    bytes_read: u64,
}

/// Reads every readable mapping of this process through /proc/self/mem, the
/// way a root attacker reads another process, and counts `needle`s.
fn scan_own_memory(needle: &Needle) -> Scan {
    const PIECE: u64 = 1 << 20;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mem = File::open("/proc/self/mem").unwrap();
    let mut buffer = vec![0u8; PIECE as usize + needle.split.len()];
    let mut scan = Scan {
        hits: Vec::new(),
        failed_ranges: Vec::new(),
        bytes_read: 0,
    };

    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let perms = fields.next().unwrap();
        if !perms.starts_with('r') || line.contains("[vvar") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();

        let mut at = start;
        while at < end {
            // Overlap pieces by the needle length so no match straddles two reads.
            let len = (end - at).min(PIECE + needle.split.len() as u64) as usize;
            match mem.read_at(&mut buffer[..len], at) {
                Ok(read) => {
                    scan.bytes_read += read as u64;
                    let found = needle.count_in(&buffer[..read]);
                    scan.hits.extend(std::iter::repeat_n(at as usize, found));
                }
                Err(err) => {
                    scan.failed_ranges
                        .push((start, end, err.raw_os_error().unwrap_or(0)));
                    break;
                }
            }
            at += PIECE;
        }
    }
    scan
}

fn range_contains(ranges: &[(u64, u64, i32)], address: usize) -> Option<i32> {
    let address = address as u64;
    ranges
        .iter()
        .find(|&&(start, end, _)| start <= address && address < end)
        .map(|&(_, _, errno)| errno)
}

child_test!(init_prefers_memfd_secret, RunAs::Same, {
    assert_eq!(memory_mode(), MemoryMode::None);
    let early = SecretBuf::from_slice(b"before init").unwrap();
    assert!(
        !early.is_protected(),
        "before init_memory buffers are on the heap"
    );

    let expected = if memfd_secret_works() {
        MemoryMode::MemfdSecret
    } else {
        println!("note: memfd_secret is not available on this kernel, expecting mlock");
        MemoryMode::Mlock
    };
    assert_eq!(init_memory(STRICT).unwrap(), expected);
    assert_eq!(memory_mode(), expected);
    assert_eq!(
        init_memory(STRICT).unwrap(),
        expected,
        "a second call keeps the arena"
    );

    let key = SecretBuf::from_slice(&[7u8; 32]).unwrap();
    assert!(key.is_protected());
    assert_eq!(key.expose(), &[7u8; 32][..]);
    assert_eq!(early.expose(), b"before init");

    let usage = arena_usage();
    assert_eq!(usage.chunks, 1);
    assert_eq!(usage.mapped_bytes, 256 * 1024);
    assert_eq!(usage.used_bytes, 32);

    if expected == MemoryMode::MemfdSecret {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            maps.contains("secretmem"),
            "no secretmem mapping in:\n{maps}"
        );
    }
});

child_test!(ten_thousand_keys_fit_memlock, RunAs::Unprivileged, {
    const DEFAULT_MEMLOCK: u64 = 8 << 20;
    if !set_memlock_limit(DEFAULT_MEMLOCK) {
        return;
    }
    let maps_before = mapping_count();
    let mode = init_memory(STRICT).unwrap();
    assert_ne!(mode, MemoryMode::None);

    // Keys of 32 to 64 bytes, each filled with its own index.
    let mut keys = Vec::new();
    for i in 0..10_000u32 {
        let len = 32 + (i % 33) as usize;
        let mut key = SecretBuf::new(len).unwrap();
        key.expose_mut().fill((i % 251) as u8);
        keys.push(key);
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key.len(), 32 + i % 33);
        assert!(
            key.expose().iter().all(|&b| b == (i % 251) as u8),
            "key {i} was overwritten"
        );
    }

    let usage = arena_usage();
    let new_mappings = mapping_count() - maps_before;
    println!(
        "measured: 10000 keys of 32-64 bytes in {} mode: {} chunks, {} KiB mapped, {} KiB used, {new_mappings} new mappings",
        mode.as_str(),
        usage.chunks,
        usage.mapped_bytes / 1024,
        usage.used_bytes / 1024
    );
    assert!(usage.chunks <= 3, "{usage:?}");
    // The Vec of 10,000 handles is large enough for malloc to mmap it too.
    assert!(
        new_mappings <= usage.chunks + 2,
        "{new_mappings} new mappings"
    );

    // Fill the rest of the limit: exhaustion is an error, not an abort.
    let mut extra = Vec::new();
    let error = loop {
        match SecretBuf::new(64) {
            Ok(buf) => extra.push(buf),
            Err(err) => break err,
        }
        assert!(
            extra.len() <= (DEFAULT_MEMLOCK / 64) as usize,
            "allocated past RLIMIT_MEMLOCK"
        );
    };
    let usage = arena_usage();
    println!(
        "measured: exhausted after {} more 64-byte keys: {} chunks, {} KiB mapped",
        extra.len(),
        usage.chunks,
        usage.mapped_bytes / 1024
    );
    assert!(
        matches!(error, MemoryError::Exhausted { requested: 64 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("RLIMIT_MEMLOCK"), "{error}");
    assert!(
        usage.mapped_bytes as u64 > DEFAULT_MEMLOCK * 7 / 8,
        "{usage:?}"
    );

    // Freeing returns memory to the limit.
    drop(extra);
    assert!(arena_usage().chunks < usage.chunks);
    SecretBuf::new(64).expect("allocation after freeing");
});

child_test!(init_explains_zero_memlock, RunAs::Unprivileged, {
    if !set_memlock_limit(0) {
        return;
    }
    let error = init_memory(STRICT).unwrap_err();
    let message = error.to_string();
    println!("note: {message}");
    assert!(matches!(error, MemoryError::Unavailable(_)), "{error:?}");
    assert!(message.contains("memfd_secret: E"), "{message}");
    assert!(message.contains("mlock: E"), "{message}");
    assert!(message.contains("RLIMIT_MEMLOCK 0 bytes"), "{message}");
    assert!(message.contains("--allow-insecure-memory"), "{message}");
    assert_eq!(memory_mode(), MemoryMode::None);

    let insecure = MemoryPolicy {
        allow_insecure: true,
    };
    assert_eq!(init_memory(insecure).unwrap(), MemoryMode::None);
    let buf = SecretBuf::from_slice(b"heap").unwrap();
    assert!(!buf.is_protected());
    assert_eq!(buf.expose(), b"heap");
});

/// Plants a random key in the arena and a random canary on the heap, then
/// reads all of memory through /proc/self/mem.
fn check_secret_hidden_from_proc_mem() {
    if init_memory(STRICT).unwrap() != MemoryMode::MemfdSecret {
        println!("skipped: memfd_secret is not available, mlock pages are readable through /proc");
        return;
    }

    let mut key = SecretBuf::new(32).unwrap();
    random_bytes(key.expose_mut());
    let key_needle = Needle::of(key.expose());
    let key_address = key.expose().as_ptr() as usize;

    let mut canary = vec![0u8; 32];
    random_bytes(&mut canary);
    let canary_needle = Needle::of(&canary);

    let key_scan = scan_own_memory(&key_needle);
    let canary_scan = scan_own_memory(&canary_needle);
    println!(
        "measured: read {} MiB through /proc/self/mem, unreadable ranges (start, end, errno): {:x?}",
        key_scan.bytes_read >> 20,
        key_scan.failed_ranges
    );

    // Positive control: the same reader finds an ordinary heap canary.
    assert!(
        !canary_scan.hits.is_empty(),
        "heap canary not found: the scan is broken"
    );
    assert!(
        key_scan.hits.is_empty(),
        "key found through /proc/self/mem in ranges at {:x?}",
        key_scan.hits
    );
    let errno = range_contains(&key_scan.failed_ranges, key_address);
    assert!(errno.is_some(), "the key's mapping was read without error");

    // A direct read at the key's address fails too.
    let mem = File::open("/proc/self/mem").unwrap();
    let mut byte = [0u8; 1];
    let direct = mem.read_at(&mut byte, key_address as u64);
    println!("note: direct read of the key page: {direct:?}");
    assert!(direct.is_err(), "read the key page through /proc/self/mem");

    // process_vm_readv pins the pages it reads, which the kernel refuses for
    // memfd_secret memory.
    let mut copy = [0u8; 32];
    let local = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: copy.len(),
    };
    let remote = libc::iovec {
        iov_base: key_address as *mut libc::c_void,
        iov_len: 32,
    };
    // SAFETY: `local` points at a 32-byte buffer owned here; `remote` is only
    // read by the kernel, which checks it.
    let copied = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    let vm_error = std::io::Error::last_os_error();
    println!("note: process_vm_readv of the key: {copied} ({vm_error})");
    assert_eq!(copied, -1, "process_vm_readv copied the key");

    // Control: the same call copies the heap canary.
    let remote = libc::iovec {
        iov_base: canary.as_mut_ptr().cast(),
        iov_len: 32,
    };
    // SAFETY: as above; both buffers are 32 bytes and owned here.
    let copied = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    assert_eq!(copied, 32, "process_vm_readv failed on the heap canary");
    assert_eq!(copy[..], canary[..]);

    // Both stay alive, and so in memory, until the scans are over.
    drop(canary);
    drop(key);
}

child_test!(secret_unreadable_through_proc_mem, RunAs::Same, {
    check_secret_hidden_from_proc_mem();
});

child_test!(
    secret_unreadable_as_unprivileged_user,
    RunAs::Unprivileged,
    {
        check_secret_hidden_from_proc_mem();
    }
);

child_test!(mlock_arena_is_readable_through_proc_mem, RunAs::Same, {
    // The scan above is only meaningful if it finds arena bytes that are not
    // in memfd_secret pages: mlock keeps pages out of swap, not from root.
    match keyward_protect::memory::init_memory_without_memfd_secret(STRICT) {
        Ok(MemoryMode::Mlock) => {}
        other => {
            println!("skipped: mlock arena unavailable ({other:?})");
            return;
        }
    }
    let mut key = SecretBuf::new(32).unwrap();
    random_bytes(key.expose_mut());
    let scan = scan_own_memory(&Needle::of(key.expose()));
    assert_eq!(
        scan.hits.len(),
        1,
        "the mlock arena key should be readable exactly once"
    );

    // The arena's mapping is locked and excluded from core dumps.
    let address = key.expose().as_ptr() as usize;
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let flags = smaps_flags_for(&smaps, address).expect("key mapping not in smaps");
    assert!(flags.contains(&"lo".to_owned()), "{flags:?}");
    assert!(flags.contains(&"dd".to_owned()), "{flags:?}");
    assert!(flags.contains(&"wf".to_owned()), "{flags:?}");
});

fn smaps_flags_for(smaps: &str, address: usize) -> Option<Vec<String>> {
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                inside = start <= address && address < end;
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.split_whitespace().map(str::to_owned).collect());
            }
        }
    }
    None
}

child_test!(forked_child_cannot_read_arena, RunAs::Same, {
    let mode = init_memory(STRICT).unwrap();
    let mut key = SecretBuf::new(32).unwrap();
    key.expose_mut().fill(0x42);
    let address = key.expose().as_ptr();

    // SAFETY: the forked child only reads memory and calls _exit, so it takes
    // no lock that another thread of this process might have held.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: `address` points at 32 bytes of the parent's arena. In the
        // child they are wiped (mlock) or unmapped (memfd_secret), and a read
        // of an unmapped page ends the child with SIGSEGV.
        let first = unsafe { std::ptr::read_volatile(address) };
        // SAFETY: _exit ends the forked child without running the parent's destructors.
        unsafe { libc::_exit(if first == 0 { 0 } else { 1 }) };
    }

    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    match mode {
        MemoryMode::MemfdSecret => {
            assert!(libc::WIFSIGNALED(status), "status {status:#x}");
            assert_eq!(libc::WTERMSIG(status), libc::SIGSEGV);
        }
        MemoryMode::Mlock => {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child read the key"
            );
        }
        MemoryMode::None => unreachable!("strict init returned None"),
    }
    assert_eq!(key.expose(), &[0x42; 32][..], "the parent keeps its key");
});

child_test!(harden_process_clears_dumpable, RunAs::Same, {
    let before = measure();
    assert!(before.dumpable, "a fresh test process should be dumpable");

    harden_process().unwrap();
    let after = measure();
    assert!(!after.dumpable);
    assert_eq!(after.core_limit, 0);
});

child_test!(lock_all_memory_locks_every_mapping, RunAs::Same, {
    assert!(!measure().mlockall, "nothing is locked before mlockall");
    if !is_root()
        && rustix::process::getrlimit(rustix::process::Resource::Memlock)
            .current
            .is_some()
    {
        let error = lock_all_memory().unwrap_err();
        println!("skipped: not root, and mlockall is refused: {error}");
        assert!(
            error.to_string().contains("LimitMEMLOCK=infinity"),
            "{error}"
        );
        return;
    }

    lock_all_memory().unwrap();
    assert!(measure().mlockall, "mappings unlocked after mlockall");

    // MCL_FUTURE: a thread stack and a large allocation made afterwards are
    // locked too.
    let big = vec![1u8; 16 << 20];
    let measured_in_thread = std::thread::spawn(|| measure().mlockall).join().unwrap();
    assert!(measured_in_thread);
    assert!(measure().mlockall);
    assert_eq!(big.len(), 16 << 20);
});

child_test!(
    lock_all_memory_refused_with_finite_limit,
    RunAs::Unprivileged,
    {
        if is_root() {
            println!("skipped: the suite could not drop root for this child");
            return;
        }
        if !set_memlock_limit(8 << 20) {
            return;
        }
        let error = lock_all_memory().unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(
            error.to_string().contains("RLIMIT_MEMLOCK is 8 MiB"),
            "{error}"
        );
        assert!(!measure().mlockall);
    }
);

child_test!(secret_box_value_lives_in_arena, RunAs::Same, {
    let mode = init_memory(STRICT).unwrap();

    // Shaped like an expanded Ed25519 key: a scalar and a hash prefix.
    let mut boxed = SecretBox::new([[0x11u8; 32], [0x22u8; 32]]).unwrap();
    assert!(boxed.is_protected());
    boxed.expose_mut()[1][0] = 0x33;
    assert_eq!(boxed.expose()[0], [0x11; 32]);
    assert_eq!(boxed.expose()[1][0], 0x33);
    assert_eq!(arena_usage().used_bytes, 64);

    let address = boxed.expose().as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapping = maps
        .lines()
        .find(|line| {
            let (start, end) = line
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            let start = usize::from_str_radix(start, 16).unwrap();
            let end = usize::from_str_radix(end, 16).unwrap();
            start <= address && address < end
        })
        .unwrap();
    if mode == MemoryMode::MemfdSecret {
        assert!(mapping.contains("secretmem"), "{mapping}");
    }

    drop(boxed);
    assert_eq!(arena_usage().used_bytes, 0);
});

child_test!(
    arena_shrinks_chunks_under_small_limit,
    RunAs::Unprivileged,
    {
        // 64 KiB was the default RLIMIT_MEMLOCK before Linux 5.16: a 256 KiB
        // chunk does not fit, so the arena falls back to smaller ones.
        const OLD_DEFAULT_MEMLOCK: u64 = 64 << 10;
        if !set_memlock_limit(OLD_DEFAULT_MEMLOCK) {
            return;
        }
        let mode = init_memory(STRICT).unwrap();
        assert_ne!(mode, MemoryMode::None);
        assert_eq!(arena_usage().mapped_bytes as u64, OLD_DEFAULT_MEMLOCK);

        let mut keys = Vec::new();
        let error = loop {
            match SecretBuf::new(64) {
                Ok(key) => keys.push(key),
                Err(err) => break err,
            }
        };
        assert!(
            matches!(error, MemoryError::Exhausted { requested: 64 }),
            "{error:?}"
        );
        assert_eq!(keys.len(), (OLD_DEFAULT_MEMLOCK / 64) as usize);
        println!(
            "measured: {} keys of 64 bytes under a 64 KiB limit in {} mode",
            keys.len(),
            mode.as_str()
        );
    }
);
