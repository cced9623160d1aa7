//! Progress for people: a spinner with the current status on a TTY, plain lines elsewhere
//! (CI logs, pipes), nothing with `--json`. The spinner moves when the status does — no
//! ticker thread, because the local builder forks and must have no other thread at work.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// The engine's progress sink for one command.
pub struct Ui {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Ui {
    pub fn new(quiet: bool) -> Ui {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        });
        Ui { bar, quiet }
    }

    pub fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl engine::Progress for Ui {
    fn status(&self, text: &str) {
        match &self.bar {
            Some(b) => {
                b.set_message(text.to_string());
                b.tick();
            }
            None if !self.quiet => eprintln!("  … {text}"),
            None => {}
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }
}
