//! amictl — keeps base machine images fresh, tested, distributed and in use.
//!
//! This binary is a thin shell over the workspace crates: it parses the command line,
//! calls into `toe` (component documents) and `sandbox` (rootfs isolation), and is the
//! one place where errors become messages and exit codes.

mod advisories_cmd;
mod cli;
mod clock;
mod cloud;
mod fleet_cmd;
mod iam_cmd;
mod images_cmd;
mod lifecycle;
mod progress;
mod report_cmd;
mod rollout;
mod toe_cmd;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes shared by every command.
pub mod exit {
    /// Success; for `plan`-like commands, nothing to do.
    pub const OK: u8 = 0;
    /// The work ran and failed.
    pub const FAILED: u8 = 1;
    /// Bad usage or invalid input; nothing was changed.
    pub const USAGE: u8 = 2;
    /// `fleet`: some consumer is overdue or could not be read.
    pub const NONCOMPLIANT: u8 = 3;
    /// A component asked for a reboot (awstoe's SSM hand-off); run the same command again.
    pub const REBOOT: u8 = 194;
}

/// An error caused by the invocation or its input files: exit 2, nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    // `amictl images | head` must end quietly when head exits, not panic on a closed pipe:
    // take back the default SIGPIPE action that the Rust runtime replaces with "ignore".
    // SAFETY: no other thread exists yet; SIG_DFL installs no Rust code as a handler.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    init_tracing(&cli);
    kill_steps_on_interrupt();
    let common = &cli.common;
    let result = match cli.command {
        cli::Command::Validate => lifecycle::validate(common),
        cli::Command::Plan(a) => lifecycle::plan(common, &a),
        cli::Command::Apply(a) => lifecycle::apply(common, &a),
        cli::Command::Build(a) => lifecycle::build(common, &a),
        cli::Command::Images(a) => images_cmd::images(common, &a),
        cli::Command::Fleet(a) => fleet_cmd::fleet(common, &a),
        cli::Command::Report(a) => report_cmd::report(common, &a),
        cli::Command::Metrics(a) => report_cmd::metrics(common, &a),
        cli::Command::Advisories(a) => advisories_cmd::advisories(common, &a),
        cli::Command::Show(a) => images_cmd::show(common, &a),
        cli::Command::Audit(a) => images_cmd::audit(common, &a),
        cli::Command::IamPolicy => iam_cmd::iam_policy(common),
        cli::Command::Toe(t) => toe_cmd::run(t, common.json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("amictl: error: {e:#}");
            let usage = e.chain().any(|c| c.downcast_ref::<UsageError>().is_some());
            ExitCode::from(if usage { exit::USAGE } else { exit::FAILED })
        }
    }
}

/// Ctrl-C, SIGTERM or SIGHUP ends amictl *and* the step it is running: steps run in their
/// own process group (so timeouts can kill their children), which a terminal's signal never
/// reaches. The handler kills that group, then lets the signal end amictl as usual.
fn kill_steps_on_interrupt() {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        // SAFETY: the handler only does an atomic load, kill(2) and signal-hook's
        // async-signal-safe default emulation.
        let registered = unsafe {
            signal_hook::low_level::register(signal, move || {
                toe::process::kill_running_group();
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            })
        };
        if let Err(e) = registered {
            tracing::warn!("cannot install a handler for signal {signal}: {e}");
        }
    }
}

fn init_tracing(cli: &cli::Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMICTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
