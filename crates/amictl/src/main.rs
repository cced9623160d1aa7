//! amictl — keeps base machine images fresh, tested, distributed and in use.
//!
//! A thin shell: [`cli`] parses the command line, [`commands`] run one verb each (parse →
//! engine → render), [`render`] turns results into tables, JSON, HTML and Prometheus text,
//! [`wiring`] picks the concrete providers (aws, local) for the engine, and this file is the
//! one place where errors become messages and exit codes.

mod cli;
mod clock;
mod commands;
mod progress;
mod render;
mod serve;
mod signals;
mod ui;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes shared by every command.
pub mod exit {
    /// Success; for `plan`-like commands, nothing to do.
    pub const OK: u8 = 0;
    /// The work ran and failed (for `apply`: some action failed; see its output).
    pub const FAILED: u8 = 1;
    /// Bad usage or invalid input; nothing was changed. For `plan`: there are changes.
    pub const USAGE: u8 = 2;
    /// `fleet`, `report`, `advisories`: not compliant, or findings.
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
    let common = &cli.common;
    let result = match cli.command {
        cli::Command::Validate(a) => commands::validate::run(common, &a),
        cli::Command::Plan(a) => commands::plan::run(common, &a),
        cli::Command::Apply(a) => commands::apply::apply(common, &a),
        cli::Command::Build(a) => commands::apply::build(common, &a),
        cli::Command::Import(a) => commands::import::run(common, &a),
        cli::Command::Images(a) => commands::images::images(common, &a),
        cli::Command::Show(a) => commands::images::show(common, &a),
        cli::Command::Fleet(a) => commands::fleet::run(common, &a),
        cli::Command::Report(a) => commands::report::report(common, &a),
        cli::Command::Metrics(a) => commands::report::metrics(common, &a),
        cli::Command::Advisories(a) => commands::advisories::run(common, &a),
        cli::Command::Audit(a) => commands::audit::run(common, &a),
        cli::Command::State(s) => commands::audit::state(common, &s),
        cli::Command::IamPolicy => commands::iam::run(common),
        cli::Command::Serve(a) => serve::run(common, &a),
        cli::Command::Approvals(a) => commands::approvals::list(common, &a),
        cli::Command::Approve(a) => commands::approvals::decide(common, &a, engine::Decision::Approve),
        cli::Command::Deny(a) => commands::approvals::decide(common, &a, engine::Decision::Deny),
        cli::Command::Toe(t) => {
            signals::end_steps_on_interrupt();
            commands::toe::run(t, common.json)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("amictl: error: {}", message(&e));
            ExitCode::from(if is_usage(&e) { exit::USAGE } else { exit::FAILED })
        }
    }
}

/// The error and its causes, each said once.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // SQLite's own error repeats its message after a code: `Error code 11: …`.
        let text = match text.strip_prefix("Error code ").and_then(|t| t.split_once(": ")) {
            Some((code, rest)) if code.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
            _ => text,
        };
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<UsageError>().is_some() || c.downcast_ref::<aws::SetupError>().is_some())
}

fn init_tracing(cli: &cli::Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMICTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
