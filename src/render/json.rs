//! JSON on stdout, one document per command.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Whether this process printed its JSON document, so that a failure after
/// it does not print a second one (see `main`).
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints `value` as one pretty JSON document on stdout.
pub fn print<T: Serialize>(value: &T) {
    PRINTED.store(true, Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    // Our output types are plain data: serialization cannot fail; a closed
    // stdout (e.g. `| head`) is not worth a panic.
    if serde_json::to_writer_pretty(&mut out, value).is_ok() {
        let _ = writeln!(out);
    }
}

/// Prints `value` as one JSON line: the result that closes an NDJSON
/// stream (`--events`), which a parent driver reads line by line.
pub fn line<T: Serialize>(value: &T) {
    PRINTED.store(true, Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    if serde_json::to_writer(&mut out, value).is_ok() {
        let _ = writeln!(out);
        let _ = out.flush();
    }
}

/// Has a JSON document been printed?
pub fn printed() -> bool {
    PRINTED.load(Ordering::Relaxed)
}
