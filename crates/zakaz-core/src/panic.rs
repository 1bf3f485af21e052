//! Panics are bugs, and a bug must not look like a crash loop with a stack trace in the
//! journal: every binary installs [`install`] at start, so a panic is one redacted error line,
//! the run is recorded `error`, and the process exits 70 (EX_SOFTWARE). [`guarded`] turns a
//! panic inside a piece of work (a parser fed a hostile mail) into that work's error.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;

use futures_util::FutureExt;

/// The error a caught panic becomes; exit code 70.
#[derive(Debug, thiserror::Error)]
#[error("internal error (a bug; please report it): {0}")]
pub struct Panicked(pub String);

thread_local! {
    /// Depth of [`guarded`] calls on this thread: their panics are expected and stay quiet.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// What the last panic on this thread said, and where (redacted).
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replace the default hook (several lines and a backtrace on stderr) with one redacted line
/// in the log. Safe to call more than once.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = payload_text(info.payload());
            let at = info.location().map(|l| {
                // The last components of the path say enough (`xlsx/mod.rs`).
                let parts: Vec<&str> = l.file().rsplit('/').take(3).collect();
                let file: Vec<&str> = parts.into_iter().rev().collect();
                format!(" at {}:{}", file.join("/"), l.line())
            });
            let text = crate::secret::redact(&format!(
                "panicked{}: {}",
                at.unwrap_or_default(),
                message.chars().take(300).collect::<String>()
            ));
            LAST.with(|l| *l.borrow_mut() = Some(text.clone()));
            if GUARDED.with(Cell::get) == 0 {
                tracing::error!("{text}");
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The panic a `catch_unwind` caught, as an error: the hook's line when it ran, else the
/// payload's text.
pub fn into_error(payload: Box<dyn Any + Send>) -> anyhow::Error {
    let text = LAST.with(|l| l.borrow_mut().take()).unwrap_or_else(|| {
        crate::secret::redact(&format!("panicked: {}", payload_text(&*payload)))
    });
    Panicked(text).into()
}

/// `f`, with a panic turned into the error `<failed> (it panicked at <where>: <message>)`:
/// whatever hostile input does to a parser is that input's failure, never the run's end (the
/// state `f` touched is dropped). `failed` says what failed ("the CSV parser failed").
pub fn guarded<T>(failed: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    install();
    GUARDED.with(|g| g.set(g.get() + 1));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    outcome.unwrap_or_else(|payload| match into_error(payload).downcast::<Panicked>() {
        Ok(Panicked(text)) => anyhow::bail!("{failed} (it {text})"),
        Err(other) => Err(other),
    })
}

/// `fut`, with a panic while polling it turned into a [`Panicked`] error.
pub async fn catch<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| Err(into_error(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_panic_is_an_error_naming_the_work_and_where() {
        let secret = crate::secret::Secret::new("panic-secret-0123456789");
        let err = guarded("reading the report failed", || -> anyhow::Result<()> {
            panic!("boom with {}", secret.expose())
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("reading the report failed (it panicked at "),
            "{err}"
        );
        assert!(
            err.contains("panic.rs:") && err.contains("boom with ***"),
            "{err}"
        );
        assert!(!err.contains("panic-secret"), "{err}");
        assert_eq!(guarded("fine", || Ok(3)).unwrap(), 3);
    }

    #[tokio::test]
    async fn a_panicking_future_is_a_panicked_error() {
        install();
        let panicking = async {
            panic!("in a future");
            #[allow(unreachable_code)]
            anyhow::Ok(())
        };
        let err = catch(panicking).await.unwrap_err();
        assert!(err.is::<Panicked>(), "{err}");
        assert!(err.to_string().contains("in a future"), "{err}");
        assert_eq!(
            crate::error::exit_code_for(&err),
            crate::error::exit::SOFTWARE
        );
    }
}
