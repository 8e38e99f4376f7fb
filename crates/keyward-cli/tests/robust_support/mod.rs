//! Helpers of the robustness tests: a reproducible random generator and
//! connections made as another uid. The raw agent requests and polling
//! helpers are in `common`.
#![allow(dead_code)]

/// A small xorshift generator: reproducible random delays without a
/// dependency. The seed is printed by the caller so a failure can be
/// replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn from_time() -> Rng {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng::new(seed)
    }

    pub fn seed(&self) -> u64 {
        self.0
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Returns a number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Runs `work` on a new thread whose credentials are `uid` and `gid` with no
/// supplementary groups. Linux keeps credentials per thread underneath the
/// C library, so connections made on that thread carry `uid` as their peer
/// credentials while the rest of the test stays root.
pub fn as_user<T: Send + 'static>(uid: u32, gid: u32, work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        rustix::thread::set_thread_groups(&[]).expect("drop supplementary groups (needs root)");
        rustix::thread::set_thread_res_gid(
            rustix::process::Gid::from_raw(gid),
            rustix::process::Gid::from_raw(gid),
            rustix::process::Gid::from_raw(gid),
        )
        .expect("set the thread's gid (needs root)");
        rustix::thread::set_thread_res_uid(
            rustix::process::Uid::from_raw(uid),
            rustix::process::Uid::from_raw(uid),
            rustix::process::Uid::from_raw(uid),
        )
        .expect("set the thread's uid (needs root)");
        work()
    })
    .join()
    .expect("the thread running as another uid panicked")
}
