//! JSON on stdout, one document per command.

use std::io::Write;

use serde::Serialize;

/// Prints `value` as one pretty JSON document on stdout.
pub fn print<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    // Our output types are plain data: serialization cannot fail; a closed
    // stdout (e.g. `| head`) is not worth a panic.
    if serde_json::to_writer_pretty(&mut out, value).is_ok() {
        let _ = writeln!(out);
    }
}
