//! A `log` sink for binaries that serve: one line per record on stderr. The server logs what it
//! keeps from clients (failed generations, refused hosts and origins, adapter load errors).
use log::{Level, Log, Metadata, Record};

struct Stderr(Level);

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.0
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{}: {}", r.level().as_str().to_ascii_lowercase(), r.args());
        }
    }

    fn flush(&self) {}
}

static SINK: Stderr = Stderr(Level::Warn);

/// Sends warnings and errors to stderr; a second call (or another logger) is ignored.
pub fn log_to_stderr() {
    if log::set_logger(&SINK).is_ok() {
        log::set_max_level(SINK.0.to_level_filter());
    }
}
