//! The product policy of `--no-isolation`: pass everything through, and
//! with `--trace` print one strace-style line per trapped syscall.

use crate::report::Report;
use isotrace_arch::Syscall;
use isotrace_tracer::format::{self, StrReader};
use isotrace_tracer::{Action, Call, ExitAction, Policy, TraceeView, Verdict};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

pub struct TracePolicy {
    out: Option<Box<dyn Write>>,
    /// `--report`: the accesses of the group.
    pub report: Option<Report>,
    /// Calls formatted at entry, printed with their result at exit. Entry
    /// is the only time an execve's arguments can still be read.
    in_flight: HashMap<i32, String>,
}

/// Lets the printer read strings through the tracer's view of a tracee.
struct Reader<'a>(&'a mut dyn TraceeView);

impl StrReader for Reader<'_> {
    fn read_cstr(&mut self, addr: u64, max: usize) -> Option<Vec<u8>> {
        self.0.read_cstr(addr, max)
    }
    fn read_bytes(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        self.0.read_bytes(addr, len)
    }
}

impl TracePolicy {
    pub fn new(trace: bool, file: Option<&Path>) -> std::io::Result<Self> {
        let out: Option<Box<dyn Write>> = match file {
            Some(f) => Some(Box::new(std::io::BufWriter::new(std::fs::File::create(f)?))),
            None if trace => Some(Box::new(std::io::LineWriter::new(std::io::stderr()))),
            None => None,
        };
        Ok(TracePolicy {
            out,
            report: None,
            in_flight: HashMap::new(),
        })
    }

    pub fn finish(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }

    /// Formats a call another policy decided on, showing the paths it
    /// rewrote as `"public" => "private"`. Returns whether the line waits
    /// for an exit stop to print the result.
    pub fn on_entry_with(
        &mut self,
        call: &Call,
        verdict: &Verdict,
        view: &mut dyn TraceeView,
    ) -> bool {
        let reported = match self.report.as_mut() {
            Some(r) => r.begin(call, view),
            None => false,
        };
        if self.out.is_none() {
            return reported;
        }
        let rewritten: &[(usize, Vec<u8>)] = match &verdict.action {
            Action::Rewrite { paths, .. } | Action::RewriteArgv { paths, .. } => paths,
            _ => &[],
        };
        let text = format::format_call(call.sc, &call.args, rewritten, &mut Reader(view));
        if never_returns(call.sc) {
            self.line(call, &text, "?");
            return reported;
        }
        self.in_flight.insert(call.tid, text);
        true
    }

    fn line(&mut self, call: &Call, text: &str, ret: &str) {
        if let Some(out) = self.out.as_mut() {
            let _ = writeln!(out, "[pid {}] {} = {}", call.tid, text, ret);
        }
    }
}

/// Calls that never come back to an exit stop when they succeed.
fn never_returns(sc: &Syscall) -> bool {
    matches!(sc.name, "exit" | "exit_group" | "rt_sigreturn")
}

impl Policy for TracePolicy {
    fn wants_paths(&self, _sc: &Syscall) -> bool {
        self.report.is_some()
    }

    fn on_entry(&mut self, call: &Call, view: &mut dyn TraceeView) -> Verdict {
        let wants_exit = self.on_entry_with(call, &Verdict::CONTINUE, view);
        Verdict::CONTINUE.with_exit_stop(wants_exit)
    }

    fn on_exit(
        &mut self,
        call: &Call,
        _rewritten: &[(usize, Vec<u8>)],
        ret: i64,
        _view: &mut dyn TraceeView,
    ) -> ExitAction {
        if let Some(r) = self.report.as_mut() {
            r.end(call, ret);
        }
        let Some(text) = self.in_flight.remove(&call.tid) else {
            return ExitAction::NONE;
        };
        let ret_text = format::format_ret(call.sc, ret);
        self.line(call, &text, &ret_text);
        ExitAction::NONE
    }

    fn on_abandoned(&mut self, call: &Call, _rewritten: &[(usize, Vec<u8>)]) {
        if let Some(r) = self.report.as_mut() {
            r.abandon(call.tid);
        }
        let Some(text) = self.in_flight.remove(&call.tid) else {
            return;
        };
        self.line(call, &text, "?");
    }
}
