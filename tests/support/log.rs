//! What the crate logs, captured for tests that read it: one global TRACE
//! subscriber for the test binary, and for each test a view of the lines
//! logged since it called [`capture`], on its own thread.
//!
//! All the tests share one binary and run on parallel threads, so a test
//! counting a message must not see another test's lines: libtest runs each
//! test on a thread of its own (named after the test) and a
//! `#[tokio::test]` runtime runs its tasks on that thread, so a line's
//! thread tells whose it is. A test whose lines come from other threads (a
//! multi-thread runtime, threads it spawns) reads [`Capture::everywhere`].

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// One logged event: the thread it was logged on, and its text.
struct Line {
    thread: Option<String>,
    text: String,
}

/// Every line logged by the binary, in order.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<Line>>>);

/// A test's view of the log.
#[derive(Clone)]
pub struct Capture {
    buffer: Buffer,
    /// Lines before this index were logged before the test looked.
    from: usize,
    /// Only lines logged on this thread (`None`: every thread).
    thread: Option<String>,
}

impl Capture {
    /// The same view over every thread's lines (still only those logged
    /// since [`capture`]).
    pub fn everywhere(&self) -> Capture {
        Capture {
            thread: None,
            ..self.clone()
        }
    }

    /// Every line the test binary logged, from its start, on every thread:
    /// for a message logged once per process, which whichever test came
    /// first caused.
    pub fn whole_process(&self) -> Capture {
        Capture {
            from: 0,
            thread: None,
            ..self.clone()
        }
    }

    /// Everything this view holds so far, as text.
    pub fn text(&self) -> String {
        let lines = self.buffer.0.lock().expect("the log buffer");
        lines
            .iter()
            .skip(self.from)
            .filter(|l| self.thread.is_none() || l.thread == self.thread)
            .map(|l| l.text.as_str())
            .collect()
    }

    /// How many times `needle` occurs in what this view holds so far.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

/// Collects one event's text; handed to the subscriber per event, on the
/// thread that logs it.
pub struct EventWriter {
    buffer: Buffer,
    thread: Option<String>,
    bytes: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        // A poisoned lock means a test already failed; its lines may go.
        if let Ok(mut lines) = self.buffer.0.lock() {
            lines.push(Line {
                thread: self.thread.take(),
                text,
            });
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            buffer: self.clone(),
            thread: std::thread::current().name().map(str::to_owned),
            bytes: Vec::new(),
        }
    }
}

/// Installs, once for this test binary, a global TRACE subscriber writing to
/// a buffer, and returns this test's view of it: the lines logged from now
/// on, on this thread. Global, not per-thread: tracing caches per call site
/// whether anyone listens, so a thread-local subscriber misses events whose
/// call sites another test thread registered first.
pub fn capture() -> Capture {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    let buffer = BUFFER
        .get_or_init(|| {
            let buffer = Buffer::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                // Spans' openings and closings too, with the fields
                // recorded by then (`spans.rs` checks them).
                .with_span_events(
                    tracing_subscriber::fmt::format::FmtSpan::NEW
                        | tracing_subscriber::fmt::format::FmtSpan::CLOSE,
                )
                .with_writer(buffer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            buffer
        })
        .clone();
    let from = buffer.0.lock().expect("the log buffer").len();
    let thread = std::thread::current().name().map(str::to_owned);
    Capture {
        buffer,
        from,
        thread,
    }
}
