//! Failures ([0066]): LinkDowngrade (P′, S′, P″), crashes and the eviction of a subtree that
//! lost its way to the source.

use super::*;

impl Coordinator {
    pub(super) fn link_downgrade(&mut self, sx: Sx, s: Px, parent: ProxyId) {
        self.counters.link_downgrades += 1;
        let name = self.sname(sx);
        let sid = self.pid(s);
        let Some(&p) = self.by_id.get(&parent) else {
            self.protocol_error(s, &name, "LinkDowngrade naming an unknown parent");
            return;
        };
        let Some(sp) = self.pair(sx, s) else { return };
        if !sp.parents.contains(&p) {
            self.protocol_error(
                s,
                &name,
                "LinkDowngrade naming a proxy that is not its parent",
            );
            return;
        }
        let (region, tier, parents) = (sp.region, sp.tier, sp.parents.clone());
        // P′: another active parent in the tier above, most recently activated first.
        let mut cands: Vec<Px> = if tier > 1 {
            self.tier_members(sx, region, tier - 1)
                .into_iter()
                .filter(|&q| {
                    q != p
                        && !parents.contains(&q)
                        && self.proxies[q].alive
                        && self.room(sx, q) >= 1
                })
                .collect()
        } else {
            Vec::new()
        };
        cands.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |x| x.seq)));
        if let Some(&alt) = cands.first() {
            let aid = self.pid(alt);
            self.log(
                Rule::LinkDowngrade,
                Some(&name),
                Some(sid),
                format!("link to {parent} lost: switch to alternate parent P′ = {aid} [0066]"),
            );
            self.switch_parent(sx, s, p, alt);
            return;
        }
        // No P′, but S pulls from other parents that still serve ([0029], [0044]): it keeps
        // them and drops the lost one. Moving its children to a sibling would cut them over
        // (a redirect) while their path still delivers.
        if parents.iter().any(|&q| q != p && self.proxies[q].alive) {
            self.log(
                Rule::LinkDowngrade,
                Some(&name),
                Some(sid),
                format!(
                    "link to {parent} lost, no P′: it keeps its other parents [0029] [0044] [0066]"
                ),
            );
            self.unlink_at_parent(sx, p, s);
            if let Some(sp) = self.pair_mut(sx, s) {
                sp.parents.retain(|&q| q != p);
            }
            self.counters.parent_switches += 1;
            let parents: Vec<Peer> = self
                .pair(sx, s)
                .map(|x| x.parents.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|q| self.peer(q))
                .collect();
            self.send(
                s,
                PncMsg::SwitchToParent {
                    stream: name,
                    parents,
                },
            );
            self.after_load_decrease(sx, p);
            return;
        }
        // S′: a sibling takes the children of S.
        let need = self
            .pair(sx, s)
            .map_or(0, |x| x.load().saturating_add(x.pending.len() as u32));
        let mut sibs: Vec<Px> = self
            .tier_members(sx, region, tier)
            .into_iter()
            // S′ pulls through its own link (to P or another parent), which still works.
            .filter(|&q| q != s && self.proxies[q].alive && self.room(sx, q) >= need.max(1))
            .collect();
        sibs.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |x| x.seq)));
        if let Some(&sib) = sibs.first() {
            let bid = self.pid(sib);
            self.log(
                Rule::LinkDowngrade,
                Some(&name),
                Some(sid),
                format!("link to {parent} lost, no other active parent: children move to sibling S′ = {bid} [0066]"),
            );
            self.drain(sx, s, sib);
            return;
        }
        // P″: activate a proxy in the parent tier and switch S to it.
        if tier > 1 {
            let farm = self.next_farm_id();
            if let Some(np) =
                self.activate(sx, region, tier - 1, farm, "P″ for a LinkDowngrade [0066]")
            {
                let nid = self.pid(np);
                self.log(
                    Rule::LinkDowngrade,
                    Some(&name),
                    Some(sid),
                    format!("link to {parent} lost, no P′ nor S′: switch to newly activated P″ = {nid} [0066]"),
                );
                // The new parent was linked to no child yet; S joins it now.
                self.switch_parent(sx, s, p, np);
                return;
            }
        }
        self.log(
            Rule::LinkDowngrade,
            Some(&name),
            Some(sid),
            format!("link to {parent} lost and no P′, S′ or P″ available; unchanged [0066]"),
        );
    }

    /// A crashed proxy: per stream, its children move to an active proxy of the same tier, or
    /// to a newly activated one ([0066]); a crashed origin ends its streams.
    pub(super) fn crash(&mut self, px: Px, why: &str) {
        self.counters.crashes += 1;
        let id = self.pid(px);
        self.log(
            Rule::Crash,
            None,
            Some(id),
            format!("{why}: proxy considered crashed [0066]"),
        );
        self.proxies[px].alive = false;
        self.mark_overlays_dirty();
        let streams: Vec<Sx> = self.proxies[px].streams.iter().copied().collect();
        for sx in streams {
            if self.streams.get(&sx).is_some_and(|s| s.origin == px) {
                self.teardown(sx, "the origin crashed");
            } else {
                self.crash_pair(sx, px);
            }
        }
        self.proxies[px].streams.clear();
        self.proxies[px].connections = 0;
        self.proxies[px].bps = 0;
    }

    /// Deactivate `x` and its whole subtree for `sx` (a subtree that lost its way to the source
    /// and found no new parent): no proxy is left without a path to the source. Children go
    /// before their parents, as a recursion would take them, but from an explicit stack with
    /// each proxy visited once: no depth or shape of tree can overflow the stack or loop.
    pub(super) fn evict(&mut self, sx: Sx, x: Px) {
        let mut seen = BTreeSet::new();
        // (proxy, its children already queued)
        let mut work = vec![(x, false)];
        while let Some((x, expanded)) = work.pop() {
            if !expanded {
                let Some(p) = self.pair(sx, x) else { continue };
                if !seen.insert(x) {
                    continue;
                }
                work.push((x, true));
                let kids: Vec<Px> = p.children.iter().chain(p.pending.iter()).copied().collect();
                work.extend(kids.into_iter().rev().map(|c| (c, false)));
                continue;
            }
            let Some(p) = self.take_pair(sx, x) else {
                continue;
            };
            let name = self.sname(sx);
            self.proxies[x].streams.remove(&sx);
            for q in p.parents {
                self.unlink_at_parent(sx, q, x);
            }
            if self.proxies[x].alive {
                self.counters.deactivations += 1;
                self.send(x, PncMsg::Deactivate { stream: name });
            }
        }
    }

    pub(super) fn crash_pair(&mut self, sx: Sx, x: Px) {
        let name = self.sname(sx);
        let xid = self.pid(x);
        let Some(p) = self.pair(sx, x) else { return };
        let (region, tier, parents) = (p.region, p.tier, p.parents.clone());
        let kids: Vec<Px> = p.children.iter().chain(p.pending.iter()).copied().collect();
        // Children first, while x is still in the tree.
        for c in kids {
            let need = 1;
            let mut targets: Vec<Px> = self
                .tier_members(sx, region, tier)
                .into_iter()
                .filter(|&q| q != x && self.proxies[q].alive && self.room(sx, q) >= need)
                .collect();
            targets.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |y| y.seq)));
            let target = match targets.first() {
                Some(&t) => Some(t),
                None => {
                    let farm = self.next_farm_id();
                    self.activate(
                        sx,
                        region,
                        tier,
                        farm,
                        "replacement for a crashed proxy [0066]",
                    )
                }
            };
            match target {
                Some(t) => {
                    let (cid, tid) = (self.pid(c), self.pid(t));
                    self.log(
                        Rule::Crash,
                        Some(&name),
                        Some(xid),
                        format!("child {cid} of crashed {xid} moves to {tid} [0066]"),
                    );
                    self.move_child(sx, c, x, t);
                }
                None => {
                    let cid = self.pid(c);
                    self.log(
                        Rule::Crash,
                        Some(&name),
                        Some(xid),
                        format!(
                            "no proxy of tier {tier} can take child {cid} of crashed {xid}: its subtree is deactivated, its viewers come back through redirection [0066]"
                        ),
                    );
                    self.evict(sx, c);
                }
            }
        }
        // Remove x itself; its viewers are gone (they come back through redirection).
        let Some(p) = self.take_pair(sx, x) else {
            return;
        };
        for q in parents {
            self.unlink_at_parent(sx, q, x);
            self.after_load_decrease(sx, q);
        }
        // Children left without a parent (no replacement found) stay in the view, parentless.
        let orphans: Vec<Px> = p.children.iter().copied().collect();
        for c in orphans {
            if let Some(cp) = self.pair_mut(sx, c) {
                cp.parents.retain(|&q| q != x);
            }
        }
    }

    /// Removes `x`'s pair from stream `sx` and from everything of the stream that names it (its
    /// tier's active set, its farm, a drain towards it, a parent's pending children) and takes
    /// its load off its machine. The caller unlinks its parents and children.
    pub(super) fn take_pair(&mut self, sx: Sx, x: Px) -> Option<Pair> {
        let s = self.streams.get_mut(&sx)?;
        let p = s.pairs.remove(&x)?;
        Self::drop_share(s, x, &p);
        if let Some(t) = s.tiers.get_mut(&(p.region, p.tier)) {
            t.active.remove(x);
        }
        if let Some(f) = s.farms.get_mut(&p.farm) {
            f.retain(|&q| q != x);
            if f.is_empty() {
                s.farms.remove(&p.farm);
            }
        }
        let mut undrained = Vec::new();
        let mut relisted = Vec::new();
        for (&q, other) in s.pairs.iter_mut() {
            if other.unlist(x) {
                relisted.push(q);
            }
            if other.draining_to == Some(x) {
                other.draining_to = None;
                undrained.push(q);
            }
            if other.pending.remove(&x) {
                undrained.push(q);
            }
        }
        // Its reported links still waiting for a parent go with it (bounded by the pairs).
        for waiting in s.awaiting_parent.values_mut() {
            waiting.retain(|&(c, _)| c != x);
        }
        s.awaiting_parent.retain(|_, w| !w.is_empty());
        // A drain ended and a reservation freed change their room: noted for the refresh.
        for q in undrained {
            self.proxies.touch(q);
        }
        for q in relisted {
            self.redirect_elsewhere(sx, q, x);
        }
        self.account(sx, x, -i64::from(p.load()));
        self.tier_changed(sx, p.region, p.tier);
        Some(p)
    }
}
