//! LOGIN and LOGOFF, and what a change of load sets off: DISTRIBUTE at capacity or when
//! predicted within ΔT ([0035], [0054]), a standby joining its parents ([0054]), an idle proxy
//! leaving the tree ([0030], [0055]).

use super::state::max_s_of;
use super::tier_upkeep::count_on;
use super::*;

impl Coordinator {
    pub(super) fn login(&mut self, sx: Sx, px: Px, child: Child) {
        let (w, sm) = (self.window, self.smoothing);
        // Whether `px` is a standby still, after the LOGIN is counted.
        let standby = match child {
            Child::Viewer => {
                // One lookup of the pair for the count, the rates and its standby state: a
                // viewer's LOGIN is the most frequent event.
                let c = self.counting(px);
                self.proxies.touch(px);
                let Some(StreamRec { pairs, tiers, .. }) = self.streams.get_mut(&sx) else {
                    return;
                };
                let Some(p) = pairs.get_mut(&px) else {
                    return;
                };
                p.viewers = p.viewers.saturating_add(1);
                // Whichever viewer this is, one fewer is on its way.
                p.expected.arrived();
                count_on(p, tiers, px, true, &c);
                let standby = p.standby;
                self.account(sx, px, 1);
                standby
            }
            Child::Proxy(cid) => {
                if let Some(why) = self.unassigned_child(sx, px, cid) {
                    let name = self.sname(sx);
                    self.protocol_error(px, &name, &format!("LOGIN of child proxy refused: {why}"));
                    return;
                }
                let cx = self.by_id[&cid];
                let already = self.pair(sx, px).is_some_and(|p| p.children.contains(&cx));
                if already {
                    return;
                }
                self.link(sx, px, cx, true);
                self.count_event(sx, px, true);
                // The child joined: it is no longer a standby.
                if self.pair(sx, cx).is_some_and(|c| c.standby) {
                    self.join_parents(sx, cx);
                }
                self.pair(sx, px).is_some_and(|p| p.standby)
            }
        };
        if let Some(s) = self.streams.get_mut(&sx) {
            s.sys_login.observe(w, &sm);
        }
        if standby {
            self.join_parents(sx, px);
        }
        self.after_load_increase(sx, px);
    }

    /// [0054] a standby proxy's first LOGIN makes it join its parents (a LOGIN there), and a
    /// standby parent its own, up to the first proxy already joined. Iterative (an explicit
    /// stack in the order the recursion would take): no chain of standbys reaches the stack's
    /// limit.
    pub(super) fn join_parents(&mut self, sx: Sx, px: Px) {
        enum Step {
            Join(Px),
            Link { parent: Px, child: Px },
            LoadIncreased(Px),
        }
        let mut work = vec![Step::Join(px)];
        while let Some(step) = work.pop() {
            match step {
                Step::Join(px) => {
                    let Some(p) = self.pair_mut(sx, px) else {
                        continue;
                    };
                    if !p.standby {
                        continue;
                    }
                    p.standby = false;
                    let parents = p.parents.clone();
                    let name = self.sname(sx);
                    let id = self.pid(px);
                    let ids = id_list(parents.iter().map(|&q| self.pid(q)));
                    self.log(
                        Rule::Standby,
                        Some(&name),
                        Some(id),
                        format!("first LOGIN: standby joins its parents {ids} [0054]"),
                    );
                    work.extend(
                        parents
                            .into_iter()
                            .rev()
                            .map(|parent| Step::Link { parent, child: px }),
                    );
                }
                Step::Link { parent, child } => {
                    let joined = self
                        .pair(sx, parent)
                        .is_some_and(|p| p.children.contains(&child));
                    if joined || !self.link(sx, parent, child, true) {
                        continue;
                    }
                    self.count_event(sx, parent, true);
                    // The parent joins its own parents before its load is looked at.
                    work.push(Step::LoadIncreased(parent));
                    if self.pair(sx, parent).is_some_and(|p| p.standby) {
                        work.push(Step::Join(parent));
                    }
                }
                Step::LoadIncreased(q) => self.after_load_increase(sx, q),
            }
        }
    }

    pub(super) fn logoff(&mut self, sx: Sx, px: Px, child: Child) {
        let (w, sm) = (self.window, self.smoothing);
        match child {
            Child::Viewer => {
                let Some(p) = self.pair_mut(sx, px) else {
                    return;
                };
                if p.viewers == 0 {
                    let name = self.sname(sx);
                    self.protocol_error(px, &name, "LOGOFF of a viewer at a proxy with none");
                    return;
                }
                p.viewers -= 1;
                self.count_event(sx, px, false);
                self.account(sx, px, -1);
            }
            Child::Proxy(cid) => {
                let Some(&cx) = self.by_id.get(&cid) else {
                    let name = self.sname(sx);
                    self.protocol_error(
                        px,
                        &name,
                        &format!("LOGOFF of {cid}, not a registered proxy"),
                    );
                    return;
                };
                let was = self.pair(sx, px).is_some_and(|p| p.children.contains(&cx));
                if !was {
                    // The PNC moved or deactivated it already and counted its departure then
                    // (defect 5), or it never was a child here: nothing changes.
                    let (name, id) = (self.sname(sx), self.pid(px));
                    self.log(
                        Rule::Protocol,
                        Some(&name),
                        Some(id),
                        format!("LOGOFF of {cid}, not a child here (already moved or never assigned); nothing changes"),
                    );
                    return;
                }
                let serving = self.pair(sx, cx).is_some_and(|c| {
                    (c.load() > 0 || c.expected.total() > 0) && c.draining_to.is_none()
                });
                if serving && self.proxies[cx].disconnected {
                    // Its control connection closed too: it most likely died. Re-parenting it
                    // would deactivate this parent, which its siblings' new paths need; the
                    // heartbeat timeout decides, and its children report their own lost links.
                    let (name, id) = (self.sname(sx), self.pid(px));
                    self.log(
                        Rule::LinkDowngrade,
                        Some(&name),
                        Some(id),
                        format!(
                            "LOGOFF of {cid}, whose control connection is closed: left to the heartbeat timeout [0066]"
                        ),
                    );
                    return;
                }
                if serving && self.proxies[cx].decides {
                    // A proxy running the agent logs off its parents when its last sink leaves
                    // ([0055]) before its next heartbeat shows it empty, and reports a lost
                    // parent itself (LinkDowngrade, [0066]). Its own word settles it: the
                    // heartbeat with load 0 makes it idle (and unlinks it here), a LinkDowngrade
                    // re-parents it. Taking this LOGOFF for a lost link would activate a new
                    // parent for a proxy that is leaving.
                    let (name, id) = (self.sname(sx), self.pid(px));
                    self.log(
                        Rule::Protocol,
                        Some(&name),
                        Some(id),
                        format!(
                            "LOGOFF of {cid}, which served at its last heartbeat: its own heartbeat or LinkDowngrade decides [0055] [0066]"
                        ),
                    );
                    return;
                }
                if serving {
                    // The PNC neither moved nor drained it and it still serves: it lost its link
                    // here, and must not be left without a path to the source ([0066]). (A
                    // drained child stops pulling before its last viewer is gone: that LOGOFF
                    // is its departure.)
                    let (name, id) = (self.sname(sx), self.pid(px));
                    self.log(
                        Rule::LinkDowngrade,
                        Some(&name),
                        Some(id),
                        format!(
                            "LOGOFF of {cid}, which still serves: handled as its lost link [0066]"
                        ),
                    );
                    self.link_downgrade(sx, cx, id);
                    return;
                }
                // `unlink_at_parent` counts the departure as a logoff of the parent.
                self.unlink_at_parent(sx, px, cx);
                if let Some(c) = self.pair_mut(sx, cx) {
                    c.parents.retain(|&q| q != px);
                }
            }
        }
        if let Some(s) = self.streams.get_mut(&sx) {
            s.sys_logoff.observe(w, &sm);
        }
        self.after_load_decrease(sx, px);
    }

    /// DISTRIBUTE when the load reaches Max_s ([0035]) or is predicted to within ΔT ([0054]),
    /// for a proxy that does not decide for itself: one decider per decision (DECIDERS.md), and
    /// a proxy that decides sends its own DISTRIBUTE.
    pub(super) fn after_load_increase(&mut self, sx: Sx, px: Px) {
        // One lookup of the pair for its state, Max_s and rates (`max_s`, `pair_rates`).
        let other_reserved = self.other_reserved(sx, px);
        let (w, sm) = (self.window, self.smoothing);
        let rec = &self.proxies[px];
        let Some(s) = self.streams.get_mut(&sx) else {
            return;
        };
        let bitrate = s.info.bitrate_bps;
        let Some(p) = s.pairs.get_mut(&px) else {
            return;
        };
        if p.tier == 0 || p.phase != Phase::Expansion || p.distribute_served || rec.decides {
            return;
        }
        let load = p.load();
        let max = max_s_of(rec, load, bitrate, other_reserved);
        if load >= max {
            self.distribute(
                sx,
                px,
                &format!("load {load} reached capacity {max} [0035]"),
            );
            return;
        }
        if self.config.growth == Growth::OneAtATime {
            return;
        }
        // It does not decide: its rates are the core's own predictors (`pair_rates`).
        let (lin, loff) = (p.login.rate(w, &sm), p.logoff.rate(w, &sm));
        let ahead = f64::from(load) + (lin - loff) * self.delta_t_secs();
        if ahead >= f64::from(max) {
            self.distribute(
                sx,
                px,
                &format!(
                    "load {load} + ({lin:.3} − {loff:.3})/s × ΔT reaches capacity {max} within ΔT [0054]"
                ),
            );
        }
    }

    /// A proxy whose load falls to zero becomes idle and logs off its parent ([0030], [0055]),
    /// which may leave that one idle in turn: the tree unwinds towards the source.
    pub(super) fn after_load_decrease(&mut self, sx: Sx, px: Px) {
        self.unwind(sx, vec![Unwind::Check(px)]);
    }

    /// `px` leaves the stream now (its load is zero or moved away): deactivated, logged off its
    /// parents, which may go idle in turn.
    pub(super) fn go_idle(&mut self, sx: Sx, px: Px, why: &str) {
        let mut work = Vec::new();
        self.deactivate_idle(sx, px, why, &mut work);
        self.unwind(sx, work);
    }

    /// Carry out `work` (a stack): each proxy checked goes idle if its load is zero, and the
    /// parents it logs off are checked next, in the order a recursion would take. Iterative:
    /// no depth of tree reaches the stack's limit.
    fn unwind(&mut self, sx: Sx, mut work: Vec<Unwind>) {
        while let Some(step) = work.pop() {
            match step {
                Unwind::Check(px) => self.idle_if_unloaded(sx, px, &mut work),
                Unwind::LogOff { parent, child } => self.unlink_at_parent(sx, parent, child),
            }
        }
    }

    fn idle_if_unloaded(&mut self, sx: Sx, px: Px, work: &mut Vec<Unwind>) {
        let Some(p) = self.pair(sx, px) else { return };
        if p.tier == 0 || p.standby || p.load() > 0 || p.expected.total() > 0 {
            return;
        }
        // Standbys waiting under it that never got a child go with it: with no load left here
        // the stream has no viewer below, and the tree unwinds to the source ([0030], [0055]).
        let pending: Vec<Px> = p.pending.iter().copied().collect();
        let idle_standbys = pending.iter().all(|&c| {
            self.pair(sx, c)
                .is_none_or(|c| c.standby && c.load() == 0 && c.reserved() == 0)
        });
        if !idle_standbys {
            return;
        }
        for c in pending {
            let id = self.pid(c);
            let name = self.sname(sx);
            self.log(
                Rule::Idle,
                Some(&name),
                Some(id),
                "standby whose parent became idle: deactivated with it [0030]".into(),
            );
            self.evict(sx, c);
        }
        self.deactivate_idle(sx, px, "load fell to zero [0030] [0055]", work);
    }

    /// [0058] a standby that took no viewer or child within sp of its activation, while another
    /// proxy of its tier in the expansion phase has room, is not needed (activated for a crowd
    /// that did not come, or in a farm sized beyond it, [0041]): it goes idle, as a proxy whose
    /// load fell to zero ([0030]). Checked at its heartbeats, bottom up: one with standby
    /// children waiting under it goes after them. The standby a full tier waits on stays (figure
    /// 2(d): P22 under P11 while P21 is full).
    pub(super) fn retire_unused_standby(&mut self, sx: Sx, px: Px) {
        let Some(p) = self.pair(sx, px) else { return };
        let sp = self.config.sp_ms.saturating_mul(1000);
        if p.tier == 0
            || !p.standby
            || p.load() > 0
            || p.reserved() > 0
            || p.activated_at.plus_micros(sp) > self.now
        {
            return;
        }
        let (region, tier) = (p.region, p.tier);
        let surplus = self.tier_members(sx, region, tier).into_iter().any(|q| {
            q != px
                && self.proxies[q].alive
                && self
                    .pair(sx, q)
                    .is_some_and(|o| o.phase == Phase::Expansion)
                && self.room(sx, q) >= 1
        });
        if !surplus {
            return;
        }
        self.go_idle(
            sx,
            px,
            "a standby that took no viewer or child within sp of its activation [0058]",
        );
    }

    /// Deactivate `px` for `sx` and queue its logoff at each parent, each parent then checked.
    fn deactivate_idle(&mut self, sx: Sx, px: Px, why: &str, work: &mut Vec<Unwind>) {
        let Some(p) = self.take_pair(sx, px) else {
            return;
        };
        let name = self.sname(sx);
        self.proxies[px].streams.remove(&sx);
        self.counters.deactivations += 1;
        self.send(
            px,
            PncMsg::Deactivate {
                stream: name.clone(),
            },
        );
        let id = self.pid(px);
        self.log(
            Rule::Idle,
            Some(&name),
            Some(id),
            format!("{why}: idle, deactivated"),
        );
        for parent in p.parents.into_iter().rev() {
            work.push(Unwind::Check(parent));
            work.push(Unwind::LogOff { parent, child: px });
        }
    }
}

/// One step of unwinding an idle branch of the tree.
enum Unwind {
    /// Go idle if the load is zero.
    Check(Px),
    /// `child` leaves `parent`.
    LogOff { parent: Px, child: Px },
}
