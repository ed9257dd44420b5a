//! Progress on long runs: an indicatif bar on stderr when stderr is a terminal, nothing
//! otherwise (so that scripts get only the results and the summary line).

use std::{io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar counting events, or nothing when stderr is not a terminal.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Whether a bar would be shown (so that callers can skip work only a bar needs).
    pub fn wanted() -> bool {
        std::io::stderr().is_terminal()
    }

    /// A bar for `what`, out of `total` events when known.
    pub fn new(what: &str, total: Option<u64>) -> Self {
        if !Self::wanted() {
            return Self { bar: None };
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg:>10} [{bar:40.cyan/blue}] {human_pos}/{human_len} events  {per_sec:>14}  eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{msg:>10} {spinner} {human_pos} events  {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar) }
    }

    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn inc(&self, by: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(by);
        }
    }

    /// Removes the bar, so that the summary line follows the results directly.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Prints a result line on stdout without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Prints a line above the bar (or to stderr when there is none).
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
