//! Renderers: turn plans, graphs and results into text for people or JSON
//! for programs. They only format; they decide nothing.

pub mod graph;
pub mod json;
pub mod plan;
pub mod progress;
pub mod report;
pub mod resources;
pub mod summary;

use std::io::Write;

/// Writes `text` as it is to stdout. Unlike `print!`, a failed write (the
/// terminal or SSH connection is gone: EIO, EPIPE) is dropped instead of
/// panicking, so a run that lost its terminal still saves state and exits.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

/// [`out`] for stderr.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `println!` through [`out`]: output to a reader that went away
/// (`driver status | head`) ends quietly instead of panicking.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::render::out("\n")
    };
    ($($t:tt)*) => {
        $crate::render::out(&format!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` through [`out`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {
        $crate::render::out(&format!($($t)*))
    };
}

/// `eprintln!` through [`err`].
#[macro_export]
macro_rules! errln {
    () => {
        $crate::render::err("\n")
    };
    ($($t:tt)*) => {
        $crate::render::err(&format!("{}\n", format_args!($($t)*)))
    };
}

/// `eprint!` through [`err`].
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => {
        $crate::render::err(&format!($($t)*))
    };
}
