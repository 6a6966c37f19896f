//! Viewers parked until their stream flows here: a standby's first viewers ([0054]), and viewers
//! the PNC sent here just before its `Activate` arrives. Each waits up to a deadline, then is
//! placed like any viewer, or refused with the reason (404: never activated, 503: too late).

use std::sync::Mutex;

use super::*;

/// The oldest `?from=` the VAN viewers parked for each stream asked for, on any core. A viewer
/// parks on the core that accepted it, but its stream is pulled by the stream's core: that core
/// asks its parents from here, so a child proxy re-homed to a standby resumes without a gap
/// when the parents still hold its sequence ([0066]). An entry lapses with its viewer's wait.
#[derive(Default)]
pub struct OldestWaitedFor(Mutex<HashMap<String, WaitedFor>>);

#[derive(Clone, Copy)]
struct WaitedFor {
    from: u64,
    until_us: u64,
}

impl OldestWaitedFor {
    /// A viewer parked for `stream` until `until_us` asked for `from`.
    pub fn note(&self, stream: &str, from: u64, until_us: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let e = map
            .entry(stream.to_owned())
            .or_insert(WaitedFor { from, until_us });
        e.from = e.from.min(from);
        e.until_us = e.until_us.max(until_us);
    }

    /// The oldest sequence still waited for on `stream`, forgotten once taken (the pull that
    /// takes it serves every viewer parked for it).
    pub fn take(&self, stream: &str, now_us: u64) -> Option<u64> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.until_us > now_us);
        map.remove(stream).map(|w| w.from)
    }
}

/// As in [`Admission::Wait`], with its deadline.
pub(super) struct Waiting {
    pub(super) stream: String,
    pub(super) van: Option<Option<u64>>,
    pub(super) child: Option<u32>,
    pub(super) until_us: u64,
    /// Until then a stream not (or no longer) activated here is still waited for: its
    /// activation may be on its way (0: it was activated at admission).
    pub(super) activation_until_us: u64,
}

impl Core {
    /// Viewers of standbys: served once their stream flows, answered `503` at their deadline
    /// (or at shutdown).
    pub(super) fn check_waiting(&mut self, now: u64) {
        let mut i = 0;
        while i < self.waiting.len() {
            let (slot, generation) = self.waiting[i];
            let c = &mut self.conns[slot as usize];
            let State::Waiting(w) = &c.state else {
                self.waiting.swap_remove(i);
                continue;
            };
            if c.generation != generation || c.closing {
                self.waiting.swap_remove(i);
                continue;
            }
            let flowing = self.shared.streams.lookup(&w.stream);
            // Deactivated meanwhile, or never activated: it will not start here.
            let activated = self.shared.admission.is_activated(&w.stream);
            let late = now >= w.until_us
                || self.stopping.is_some()
                || (!activated && now >= w.activation_until_us);
            if flowing.is_none() && !late {
                i += 1;
                continue;
            }
            self.waiting.swap_remove(i);
            let State::Waiting(w) = std::mem::replace(&mut c.state, State::Free) else {
                unreachable!("matched above")
            };
            match flowing {
                Some(s) => self.place_viewer(slot, s, w.van, w.child),
                None if !activated && w.activation_until_us > 0 => {
                    info!(core = self.id, stream = %w.stream, "viewer refused: no such stream, and no activation came (404)");
                    self.shared.event(left(&w.stream, w.child));
                    self.m().reject(Reject::NotFound);
                    self.reply(slot, http::error_response(404, "Not Found", &[]), None);
                }
                None => {
                    info!(core = self.id, stream = %w.stream, "viewer refused: the stream did not start here in time (503)");
                    self.shared.event(left(&w.stream, w.child));
                    self.m().reject(Reject::Other);
                    let reply = http::error_response_because(
                        503,
                        "Service Unavailable",
                        "the stream did not start at this proxy in time; try again",
                    );
                    self.reply(slot, reply, None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OldestWaitedFor;

    #[test]
    fn the_oldest_from_of_any_core_is_taken_once_and_lapses_with_the_wait() {
        let w = OldestWaitedFor::default();
        w.note("a", 500, 1_000);
        w.note("a", 420, 900);
        w.note("a", 610, 1_200);
        w.note("b", 7, 100);
        assert_eq!(w.take("a", 950), Some(420));
        assert_eq!(w.take("a", 950), None, "taken once");
        assert_eq!(w.take("b", 100), None, "lapsed with its viewer's wait");
    }
}
