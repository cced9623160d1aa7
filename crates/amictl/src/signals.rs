//! What SIGINT, SIGTERM and SIGHUP do.
//!
//! - During `apply`/`build` ([`graceful`]): the first signal asks the engine to stop —
//!   nothing new starts, the running build cleans up what it made (instances, secrets, a
//!   half-made AMI, sandboxes) and records an `interrupted` outcome — and amictl exits with
//!   128 + the signal. If that takes longer than [`GRACE`], or a second signal comes,
//!   amictl exits at once; the next `apply` recovers whatever is left.
//! - Otherwise ([`end_steps_on_interrupt`], `toe run`): the running step's process group is
//!   killed, then the signal ends amictl as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use provider::Cancel;

/// How long a polite stop may take before amictl exits anyway.
pub const GRACE: Duration = Duration::from_secs(120);

const SIGNALS: [i32; 3] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP];

/// The signal a graceful stop was asked with (0: none).
#[derive(Clone)]
pub struct Stop(Arc<AtomicI32>);

impl Stop {
    /// The exit code for the signal that stopped the run, if one did.
    pub fn exit_code(&self) -> Option<u8> {
        let s = self.0.load(Ordering::SeqCst);
        (s > 0).then(|| u8::try_from(128 + s).unwrap_or(1))
    }
}

/// Signals set `cancel` (and end running sandboxes) instead of ending amictl.
pub fn graceful(cancel: Cancel) -> Stop {
    let got = Arc::new(AtomicI32::new(0));
    let seen = got.clone();
    match signal_hook::iterator::Signals::new(SIGNALS) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for s in signals.forever() {
                    if seen.swap(s, Ordering::SeqCst) != 0 {
                        // A second signal: the operator means it.
                        std::process::exit(128 + s);
                    }
                    eprintln!(
                        "amictl: stopping (signal {s}): cleaning up what is running; signal again to exit at once"
                    );
                    cancel.cancel();
                    toe::process::kill_running_group();
                    sandbox::kill_running();
                    std::thread::spawn(move || {
                        std::thread::sleep(GRACE);
                        eprintln!("amictl: cleanup did not finish within {}s; exiting", GRACE.as_secs());
                        std::process::exit(128 + s);
                    });
                }
            });
        }
        Err(e) => tracing::warn!("cannot handle signals gracefully: {e}"),
    }
    Stop(got)
}

/// Ctrl-C, SIGTERM or SIGHUP ends amictl *and* the step it is running: steps run in their
/// own process group (so timeouts can kill their children), which a terminal's signal never
/// reaches. The handler kills that group, then lets the signal end amictl as usual.
pub fn end_steps_on_interrupt() {
    for signal in SIGNALS {
        // SAFETY: the handler only does an atomic load, kill(2) and signal-hook's
        // async-signal-safe default emulation.
        let registered = unsafe {
            signal_hook::low_level::register(signal, move || {
                // A running step: its processes are ended (orphans too) before amictl exits.
                if !toe::process::interrupt(signal) {
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
            })
        };
        if let Err(e) = registered {
            tracing::warn!("cannot install a handler for signal {signal}: {e}");
        }
    }
}
