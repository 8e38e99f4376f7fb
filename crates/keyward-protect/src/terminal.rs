//! Turning a terminal's echo off for a passphrase prompt, and back on even
//! when a signal ends the process while the prompt waits.
//!
//! Without the signal handlers, a Ctrl-C at the prompt would kill the
//! process with echo still off, and the shell after it would show nothing
//! the user types.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Signals that end the process by default and can come from the terminal
/// or its session while the prompt waits.
const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// Whether a guard exists; taken before `SAVED` is written.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// The terminal whose settings a handler restores, or -1.
static TERMINAL: AtomicI32 = AtomicI32::new(-1);

/// The settings the handler restores. Written only by the guard that took
/// `IN_USE`, before it sets `TERMINAL`; read only by the handler.
static mut SAVED: MaybeUninit<libc::termios> = MaybeUninit::uninit();

/// Restores the terminal, then ends the process by the same signal with
/// its default action, so the exit status shows which signal it was.
extern "C" fn restore_and_reraise(signal: libc::c_int) {
    let fd = TERMINAL.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: SAVED was fully written before TERMINAL was set, and is
        // not written again while it is set. tcsetattr, signal and raise
        // are async-signal-safe.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, std::ptr::addr_of!(SAVED).cast());
        }
    }
    // SAFETY: resetting a signal to its default action and raising it are
    // async-signal-safe and touch no memory of this process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// The terminal with echo off; its settings and the signal handlers come
/// back when this is dropped.
pub struct EchoOff<'a> {
    terminal: BorrowedFd<'a>,
    saved: libc::termios,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

/// Turns echo off on `terminal` (keeping the newline echoed) and discards
/// input typed ahead, before the caller writes its prompt. Until the guard
/// is dropped, SIGINT, SIGQUIT, SIGTERM and SIGHUP restore the terminal's
/// settings before they end the process. One guard at a time: a second
/// one while the first lives fails with `EBUSY`.
pub fn echo_off(terminal: BorrowedFd<'_>) -> io::Result<EchoOff<'_>> {
    let fd: RawFd = terminal.as_raw_fd();
    let mut saved = MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr writes a whole termios into the buffer on success,
    // and the buffer is read only then.
    let saved = unsafe {
        if libc::tcgetattr(fd, saved.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        saved.assume_init()
    };
    if IN_USE.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    // SAFETY: this guard holds IN_USE and TERMINAL is -1, so no handler
    // reads SAVED while it is written here.
    unsafe {
        std::ptr::addr_of_mut!(SAVED).write(MaybeUninit::new(saved));
    }
    TERMINAL.store(fd, Ordering::SeqCst);

    let mut guard = EchoOff { terminal, saved, previous: Vec::new() };
    for signal in SIGNALS {
        // SAFETY: the action is fully initialised below before use, and
        // sigaction only reads it and writes the previous action.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = restore_and_reraise as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, &action, &mut previous) != 0 {
                return Err(io::Error::last_os_error());
            }
            guard.previous.push((signal, previous));
        }
    }

    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    // Read line by line, with Enter ending the line, even on a terminal
    // left in raw mode. The Enter key still moves the cursor down a line.
    quiet.c_lflag |= libc::ECHONL | libc::ICANON;
    quiet.c_iflag |= libc::ICRNL;
    // SAFETY: quiet is a valid termios copied from the terminal's own.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(guard)
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        // SAFETY: saved is the terminal's own termios; the previous actions
        // were returned by sigaction for these signals.
        // Input typed but not read (past an over-long line) is discarded,
        // so it does not reach the next program on the terminal.
        unsafe {
            libc::tcsetattr(self.terminal.as_raw_fd(), libc::TCSAFLUSH, &self.saved);
            for (signal, previous) in &self.previous {
                libc::sigaction(*signal, previous, std::ptr::null_mut());
            }
        }
        TERMINAL.store(-1, Ordering::SeqCst);
        IN_USE.store(false, Ordering::SeqCst);
    }
}
