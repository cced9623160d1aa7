//! Terminal progress for long runs: a spinner per step on a TTY, one line per finished
//! step otherwise, and live command output with `--trace`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use toe::report::{Status, StepRecord};

pub struct Progress {
    bar: Option<ProgressBar>,
    trace: bool,
    quiet: bool,
    step_started: Instant,
}

impl Progress {
    pub fn new(trace: bool, quiet: bool) -> Progress {
        let bar = (!quiet && !trace && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, trace, quiet, step_started: Instant::now() }
    }

    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl toe::Observer for Progress {
    fn resumed(&mut self, execution_id: &str, reboots: u32) {
        self.line(&format!("resuming execution {execution_id} after reboot {reboots}"));
    }

    fn step_started(&mut self, _document: &str, phase: &str, step: &str) {
        self.step_started = Instant::now();
        if let Some(b) = &self.bar {
            b.set_message(format!("{phase}/{step}"));
        }
    }

    fn step_finished(&mut self, document: &str, phase: &str, record: &StepRecord) {
        let mark = match record.status {
            Status::Success | Status::SuccessWithIgnoredFailure => "ok  ",
            Status::Skipped => "skip",
            Status::IgnoredFailure => "IGN ",
            Status::Failed => "FAIL",
        };
        let elapsed = self.step_started.elapsed().as_secs_f64();
        let mut text = format!("{mark} {document} {phase}/{} ({elapsed:.2}s)", record.name);
        if !record.failure_message.is_empty() {
            text.push_str(&format!(": {}", record.failure_message));
        }
        self.line(&text);
    }

    fn output(&mut self, bytes: &[u8]) {
        if self.trace {
            let _ = std::io::stderr().write_all(bytes);
        }
    }
}
