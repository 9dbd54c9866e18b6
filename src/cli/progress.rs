//! Progress on stderr: on a terminal one status line rewritten in place, in GitHub
//! Actions a log group per phase, elsewhere a line per step.

use std::io::IsTerminal;
use std::sync::Mutex;

use gantry::pipeline::Phase;

pub struct Progress {
    actions: bool,
    tty: bool,
    /// The phase whose log group is open (Actions only).
    phase: Mutex<Option<Phase>>,
}

impl Progress {
    pub fn new(in_actions: bool) -> Self {
        Progress {
            actions: in_actions,
            tty: std::io::stderr().is_terminal() && !in_actions,
            phase: Mutex::new(None),
        }
    }

    /// One step of `phase`.
    pub fn step(&self, phase: Phase, line: &str) {
        if self.actions {
            if let Ok(mut current) = self.phase.lock() {
                if *current != Some(phase) {
                    if current.is_some() {
                        eprintln!("::endgroup::");
                    }
                    eprintln!("::group::{}", phase.title());
                    *current = Some(phase);
                }
            }
        }
        if self.tty {
            eprint!("\r\x1b[2Kgantry: {line}");
        } else {
            eprintln!("gantry: {line}");
        }
    }

    /// Clears the status line, or closes the open log group.
    pub fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        if self.actions && self.phase.lock().is_ok_and(|p| p.is_some()) {
            eprintln!("::endgroup::");
        }
    }
}
