//! A proxy told to stop taking viewers (StopAccepting, [0030]) sends the new ones it still gets
//! to the proxies its message names. The list must only ever name proxies that serve the
//! stream: a viewer sent to one that no longer does finds nothing there. So every StopAccepting
//! goes out at the end of its event, named from the state the event left, and goes out again
//! whenever a proxy on its list leaves the stream (deactivated, crashed) later.

use super::*;

/// At most this many proxies are named when the list is drawn from the tier's accepting ones.
const REDIRECT_LIST_LEN: u32 = 4;

impl Coordinator {
    /// Stops `px` taking viewers of `sx`, sending them to `redirect_to` (if empty: to the first
    /// of its tier that take viewers when the event ends).
    pub(super) fn stop_accepting(&mut self, sx: Sx, px: Px, redirect_to: Vec<Px>) {
        if let Some(p) = self.pair_mut(sx, px) {
            p.accepting = false;
            p.redirect_to = redirect_to;
            self.stop_accepting_due.push((sx, px));
        }
    }

    /// `x`, on the redirect list of `px` (which takes no viewers of `sx`), left the stream:
    /// `px` gets its StopAccepting again at the end of the event, without it.
    pub(super) fn redirect_elsewhere(&mut self, sx: Sx, px: Px, x: Px) {
        self.stop_accepting_due.push((sx, px));
        let name = self.sname(sx);
        let (id, gone) = (self.pid(px), self.pid(x));
        self.log(
            Rule::Redirect,
            Some(&name),
            Some(id),
            format!("{gone}, where it sends new viewers, left the stream: a new list [0030]"),
        );
    }

    /// At the end of an event, every proxy due a StopAccepting gets it: its list as the event
    /// left it (proxies that left the stream taken off), or, if that is empty, up to
    /// `REDIRECT_LIST_LEN` of its tier that take viewers now. A proxy no longer serving the
    /// stream, or told to take viewers again later in the event, gets none.
    pub(super) fn send_stop_accepting(&mut self) {
        let mut due = std::mem::take(&mut self.stop_accepting_due);
        due.sort_unstable();
        due.dedup();
        for (sx, px) in due {
            if !self.proxies[px].alive {
                continue;
            }
            let Some((region, tier, listed)) = self
                .pair(sx, px)
                .filter(|p| !p.accepting)
                .map(|p| (p.region, p.tier, p.redirect_to.clone()))
            else {
                continue;
            };
            let list = if listed.is_empty() {
                self.streams
                    .get(&sx)
                    .and_then(|s| s.tiers.get(&(region, tier)))
                    .map(|t| {
                        (0..t.active.accepting_len().min(REDIRECT_LIST_LEN))
                            .filter_map(|k| t.active.nth_accepting(k))
                            .filter(|&q| q != px)
                            .collect::<Vec<Px>>()
                    })
                    .unwrap_or_default()
            } else {
                listed
            };
            let redirect_to: Vec<Peer> = list.iter().map(|&q| self.peer(q)).collect();
            if let Some(p) = self.pair_mut(sx, px) {
                p.redirect_to = list;
            }
            let stream = self.sname(sx);
            self.send(
                px,
                PncMsg::StopAccepting {
                    stream,
                    redirect_to,
                },
            );
        }
    }
}

impl Pair {
    /// `x` left the stream: off this proxy's redirect list. True if it is to get its
    /// StopAccepting again without `x` (it still takes no viewers). Called from `take_pair`'s
    /// walk over the stream's pairs, so it costs no walk of its own.
    pub(super) fn unlist(&mut self, x: Px) -> bool {
        let Some(i) = self.redirect_to.iter().position(|&q| q == x) else {
            return false;
        };
        self.redirect_to.remove(i);
        !self.accepting
    }
}
