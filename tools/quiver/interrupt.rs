//! Ctrl-C and SIGTERM as a request to stop: long commands (`import`) check
//! [`requested`] between commits and end with the advice that resumes them,
//! instead of dying half way through a line of output.
//!
//! The handler only raises a flag (an atomic store, which is
//! async-signal-safe) and is reset once it has run, so a second signal ends
//! the process at once.

use std::sync::atomic::{AtomicBool, Ordering};

/// Raised by the handler.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C or SIGTERM arrived since [`catch`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT and SIGTERM into [`requested`] for the rest of the process.
///
/// # Errors
/// The OS refused to install the handler.
#[cfg(unix)]
pub fn catch() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is given a zeroed (valid) struct whose handler
        // is an `extern "C"` function doing only an atomic store, which is
        // async-signal-safe; SA_RESTART keeps reads from failing with EINTR.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Elsewhere the signals keep their default action.
#[cfg(not(unix))]
pub fn catch() -> std::io::Result<()> {
    Ok(())
}
