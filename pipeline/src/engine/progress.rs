//! Progress: a bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kelp_operators::VideoContext;
use tracing::info;

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    errors: u64,
    last_log: Instant,
}

impl Progress {
    pub fn new(total: u64, want_bar: bool) -> Self {
        let bar = (want_bar && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} videos  {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            errors: 0,
            last_log: Instant::now(),
        }
    }

    pub fn video_done(&mut self, ctx: &VideoContext) {
        self.done += 1;
        if !ctx.is_ok() {
            self.errors += 1;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done);
                bar.set_message(format!("{} errors", self.errors));
            }
            None => {
                if self.last_log.elapsed() >= Duration::from_secs(10) || self.done == self.total {
                    self.last_log = Instant::now();
                    info!(
                        done = self.done,
                        total = self.total,
                        errors = self.errors,
                        "progress"
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
