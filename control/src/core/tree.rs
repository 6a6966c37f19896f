//! The tree of a stream: parent and child links, reservations of standby children, moving
//! children from one parent to another (make-before-break, [0029]).

use super::*;

impl Coordinator {
    /// Make `child` a child of `parent` (joined: load; else reserved). Idempotent. Every link
    /// goes exactly one tier down, so the tree has no cycle and no path longer than its tiers,
    /// whatever a proxy reports (a re-registration naming its own child as its parent is not
    /// taken); false if the link was refused.
    pub(super) fn link(&mut self, sx: Sx, parent: Px, child: Px, joined: bool) -> bool {
        let (Some(p), Some(c)) = (self.pair(sx, parent), self.pair(sx, child)) else {
            return false;
        };
        if p.tier.checked_add(1) != Some(c.tier) {
            let (pt, ct) = (p.tier, c.tier);
            let (pid, cid) = (self.pid(parent), self.pid(child));
            let name = self.sname(sx);
            self.counters.protocol_errors += 1;
            self.log(
                Rule::Protocol,
                Some(&name),
                Some(cid),
                format!("link under {pid} refused: tier {pt} is not one above tier {ct}"),
            );
            return false;
        }
        let Some(c) = self.pair_mut(sx, child) else {
            return false;
        };
        if !c.parents.contains(&parent) {
            c.parents.push(parent);
        }
        let Some(p) = self.pair_mut(sx, parent) else {
            return false;
        };
        if joined {
            p.pending.remove(&child);
            if p.children.insert(child) {
                self.account(sx, parent, 1);
            }
        } else if !p.children.contains(&child) {
            p.pending.insert(child);
        }
        true
    }

    /// Why `parent` may not count proxy `child` as its child for `sx`, if it may not: the PNC
    /// assigned it there (activated one tier below with `parent` among its parents, joined or
    /// still pending) and it is registered and alive. A LOGIN naming anything else is a hostile
    /// or broken proxy's and changes nothing (issue 7, defect 3: P31 logging in its own
    /// parent P21 made a loop).
    pub(super) fn unassigned_child(&self, sx: Sx, parent: Px, child: ProxyId) -> Option<String> {
        let Some(&cx) = self.by_id.get(&child) else {
            return Some(format!("{child} is not a registered proxy"));
        };
        if !self.proxies[cx].alive {
            return Some(format!("{child} is not alive"));
        }
        let Some(c) = self.pair(sx, cx) else {
            return Some(format!("{child} is not active for the stream"));
        };
        if !c.parents.contains(&parent) {
            let pid = self.pid(parent);
            return Some(format!("{child} was not assigned to {pid}"));
        }
        let pt = self.pair(sx, parent).map_or(0, |p| p.tier);
        if pt.checked_add(1) != Some(c.tier) {
            return Some(format!("{child} is in tier {}, not one below {pt}", c.tier));
        }
        None
    }

    /// Remove `child` from `parent`'s children and reservations (not from the child's parents).
    pub(super) fn unlink_at_parent(&mut self, sx: Sx, parent: Px, child: Px) {
        let Some(p) = self.pair_mut(sx, parent) else {
            return;
        };
        p.pending.remove(&child);
        if p.children.remove(&child) {
            // A child proxy's departure is a logoff of its parent, whoever ends it (its LOGOFF,
            // or the PNC moving or deactivating it): CONSOLIDATE of an upper tier compares
            // these rates ([0062]; issue 7, defect 5).
            self.count_event(sx, parent, false);
            self.account(sx, parent, -1);
        }
    }

    /// Move every child of `from` to `to`: child proxies switch parent (the PNC redirects them),
    /// viewers are redirected by `from` itself ([0046]); `from` goes idle once empty.
    pub(super) fn drain(&mut self, sx: Sx, from: Px, to: Px) {
        let name = self.sname(sx);
        let Some(p) = self.pair_mut(sx, from) else {
            return;
        };
        p.accepting = false;
        p.phase = Phase::Contraction;
        p.distribute_served = true;
        p.draining_to = Some(to);
        // The viewers it counts, and those on their way to it (reserved there, maybe connected
        // already but not yet in its count): all of them end up at `to`.
        let viewers = p.viewers.saturating_add(p.expected.total());
        p.expected = Expected::default();
        let kids: Vec<Px> = p.children.iter().chain(p.pending.iter()).copied().collect();
        for c in kids {
            self.move_child(sx, c, from, to);
        }
        if viewers > 0 {
            // Reserved at `to` until its count shows them (`reservation`).
            let now = self.now;
            if let Some(tp) = self.pair_mut(sx, to) {
                tp.expected.add(now, viewers);
            }
            let peer = self.peer(to);
            self.send(
                from,
                PncMsg::RedirectChildren {
                    stream: name,
                    to: peer,
                },
            );
        }
        self.after_load_decrease(sx, from);
    }

    /// Child proxy `c` of `from` now pulls from `to` instead (make-before-break, [0029]).
    pub(super) fn move_child(&mut self, sx: Sx, c: Px, from: Px, to: Px) {
        let joined = self.pair(sx, from).is_some_and(|p| p.children.contains(&c));
        self.repoint(sx, c, from, to, joined);
        if joined {
            self.after_load_increase(sx, to);
        }
    }

    /// Moves `c`'s parent link from `from` to `to` and sends it `SwitchToParent`. A standby
    /// `to` receiving a joined child joins its own parents first ([0054]), so the new path
    /// carries data before the child switches ([0029]).
    pub(super) fn repoint(&mut self, sx: Sx, c: Px, from: Px, to: Px, joined: bool) {
        self.unlink_at_parent(sx, from, c);
        if let Some(cp) = self.pair_mut(sx, c) {
            cp.parents.retain(|&q| q != from);
        }
        self.link(sx, to, c, joined);
        if joined && self.pair(sx, to).is_some_and(|p| p.standby) {
            self.join_parents(sx, to);
        }
        self.counters.parent_switches += 1;
        let parents: Vec<Peer> = self
            .pair(sx, c)
            .map(|cp| cp.parents.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|q| self.peer(q))
            .collect();
        let name = self.sname(sx);
        self.send(
            c,
            PncMsg::SwitchToParent {
                stream: name,
                parents,
            },
        );
    }

    /// `s` pulls from `new` instead of `old`.
    pub(super) fn switch_parent(&mut self, sx: Sx, s: Px, old: Px, new: Px) {
        let joined = !self.pair(sx, s).is_some_and(|x| x.standby);
        self.repoint(sx, s, old, new, joined);
        self.after_load_decrease(sx, old);
        self.after_load_increase(sx, new);
    }
}
