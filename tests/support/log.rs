//! What the crate logs, captured for tests that read it: one global TRACE
//! subscriber per test binary, writing to a buffer.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The buffer the subscriber writes to.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

#[allow(dead_code, reason = "only tests that read the logs capture them")]
impl Capture {
    /// Everything logged so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log buffer")).into_owned()
    }

    /// How many times `needle` occurs in what was logged so far.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the log buffer")
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs, once for this test binary, a global TRACE subscriber writing to
/// a buffer, and returns the buffer. Global, not per-thread: tracing caches
/// per call site whether anyone listens, so a thread-local subscriber misses
/// events whose call sites another test thread registered first.
#[allow(dead_code, reason = "only tests that read the logs capture them")]
pub fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(capture.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            capture
        })
        .clone()
}
