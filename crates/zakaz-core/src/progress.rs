//! Progress of a long operation (a backfill, a large report): a live line on a terminal, and
//! nothing at all otherwise — under systemd the journal gets the usual line-oriented logs, not
//! a stream of redraws.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A counter with a message, drawn on stderr only when it is a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// `unit` names what is counted (`orders`, `rows`).
    pub fn counter(what: &str, unit: &str) -> Progress {
        Progress::with_target(what, unit, std::io::stderr().is_terminal())
    }

    /// A bar towards a known `total` (a queue drain: the jobs due when it began).
    pub fn bar(what: &str, unit: &str, total: u64) -> Progress {
        let p = Progress::with_target(what, unit, std::io::stderr().is_terminal());
        p.bar.set_length(total);
        let template = format!(
            "{{spinner}} {what}: [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}, {{eta}} left {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            p.bar.set_style(style.progress_chars("=> "));
        }
        p
    }

    fn with_target(what: &str, unit: &str, visible: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(
            None,
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        let template = format!("{{spinner}} {what}: {{human_pos}} {unit} in {{elapsed}} {{msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        if visible {
            // The spinner turns while a slow page or report is on its way.
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Progress { bar }
    }

    pub fn add(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn message(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        self.bar.set_message(msg);
    }

    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_when_not_a_terminal() {
        let p = Progress::with_target("loading", "rows", false);
        p.add(5);
        assert!(!p.is_visible());
        assert_eq!(p.bar.position(), 5);
    }
}
