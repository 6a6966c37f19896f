//! Read-only views for the service: the viewers' region, the proxies that accept, the
//! topology, a proxy's streams as it would re-register them. Nothing here changes the core.

use super::*;

impl Coordinator {
    /// The region of a viewer address from the CIDR table (longest prefix), else the default.
    pub fn region_of(&self, addr: IpAddr) -> String {
        self.config
            .regions
            .iter()
            .filter(|r| r.cidr.contains(&addr))
            .max_by_key(|r| r.cidr.prefix_len())
            .map(|r| r.region.clone())
            .unwrap_or_else(|| self.config.default_region.clone())
    }

    /// Proxies that take new viewers of `stream` (in `region` if given), for DNS ([0026],
    /// [0033]); sorted by id.
    pub fn accepting(&self, stream: &str, region: Option<&str>) -> Vec<Peer> {
        let Some(s) = self
            .stream_ids
            .get(stream)
            .and_then(|sx| self.streams.get(sx))
        else {
            return Vec::new();
        };
        let region = match region {
            Some(name) => match self.regions.get(name) {
                Some(id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        s.pairs
            .iter()
            .filter(|(px, p)| {
                p.accepting && self.proxies[**px].alive && region.is_none_or(|r| p.region == r)
            })
            .map(|(px, _)| self.peer(*px))
            .collect()
    }

    /// Every stream's tiers, active proxies, phases, loads and parents.
    pub fn topology(&self) -> Topology {
        let proxies = self
            .proxies
            .iter()
            .map(|(_, p)| ProxyView {
                proxy: p.id,
                name: p.name.clone(),
                addr: p.addr,
                region: self.regions.name(p.region).to_string(),
                capacity: p.capacity,
                alive: p.alive,
                connections: p.connections,
                last_heard: p.last_heard,
            })
            .collect::<Vec<_>>();
        let mut proxies = proxies;
        proxies.sort_by_key(|p| p.proxy);
        let mut streams = Vec::new();
        for (sx, s) in &self.streams {
            let overlay = self.overlays.get(&s.overlay);
            let mut regions: BTreeMap<String, BTreeMap<u32, TierView>> = BTreeMap::new();
            if let Some(o) = overlay {
                for (region, tiers) in &o.tiers {
                    let r = regions
                        .entry(self.regions.name(*region).to_string())
                        .or_default();
                    for (i, members) in tiers.iter().enumerate() {
                        r.insert(
                            i as u32 + 1,
                            TierView {
                                tier: i as u32 + 1,
                                overlay: members.clone(),
                                active: Vec::new(),
                            },
                        );
                    }
                }
            }
            for ((region, tier), rec) in &s.tiers {
                let r = regions
                    .entry(self.regions.name(*region).to_string())
                    .or_default();
                let tv = r.entry(*tier).or_insert_with(|| TierView {
                    tier: *tier,
                    overlay: Vec::new(),
                    active: Vec::new(),
                });
                for px in rec.active.iter() {
                    if let Some(v) = self.pair_view(*sx, px) {
                        tv.active.push(v);
                    }
                }
            }
            let viewers = s.pairs.values().map(|p| p.viewers).sum();
            streams.push(StreamView {
                stream: s.name.clone(),
                source: s.info.clone(),
                origin: self.proxies[s.origin].id,
                origin_children: s.pairs.get(&s.origin).map_or_else(Vec::new, |o| {
                    o.children.iter().map(|&c| self.proxies[c].id).collect()
                }),
                viewers,
                login_rate: s.sys_login.peek(self.window, &self.smoothing),
                logoff_rate: s.sys_logoff.peek(self.window, &self.smoothing),
                regions: regions
                    .into_iter()
                    .map(|(region, tiers)| RegionView {
                        region,
                        tiers: tiers.into_values().collect(),
                    })
                    .collect(),
            });
        }
        streams.sort_by(|a, b| a.stream.cmp(&b.stream));
        Topology {
            at: self.now,
            proxies,
            streams,
        }
    }

    /// What `proxy` would report in a re-registration after a PNC restart: its streams with
    /// parents and children as the core sees them. Used by tests and the simulator.
    pub fn stream_states(&self, proxy: ProxyId) -> Vec<StreamState> {
        let Some(&px) = self.by_id.get(&proxy) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for sx in &self.proxies[px].streams {
            let Some(s) = self.streams.get(sx) else {
                continue;
            };
            let Some(p) = s.pairs.get(&px) else { continue };
            out.push(StreamState {
                stream: s.name.clone(),
                source: (s.origin == px).then(|| s.info.clone()),
                tier: p.tier,
                parents: p.parents.iter().map(|&q| self.proxies[q].id).collect(),
                children: p.children.iter().map(|&q| self.proxies[q].id).collect(),
                viewers: p.viewers,
                accepting: p.accepting,
            });
        }
        out.sort_by(|a, b| a.stream.cmp(&b.stream));
        out
    }

    pub(super) fn pair_view(&self, sx: Sx, px: Px) -> Option<ActiveProxyView> {
        let s = self.streams.get(&sx)?;
        let p = s.pairs.get(&px)?;
        let rec = &self.proxies[px];
        let farm = s
            .farms
            .get(&p.farm)
            .map(|f| f.iter().map(|&q| self.proxies[q].id).collect())
            .unwrap_or_default();
        let mut children: Vec<ProxyId> = p
            .children
            .iter()
            .chain(p.pending.iter())
            .map(|&q| self.proxies[q].id)
            .collect();
        children.sort();
        Some(ActiveProxyView {
            proxy: rec.id,
            name: rec.name.clone(),
            addr: rec.addr,
            phase: p.phase,
            standby: p.standby,
            accepting: p.accepting,
            load: p.load(),
            viewers: p.viewers,
            capacity: self.max_s(sx, px),
            parents: p.parents.iter().map(|&q| self.proxies[q].id).collect(),
            children,
            farm,
            activated_at: p.activated_at,
            login_rate: p.login.peek(self.window, &self.smoothing),
            logoff_rate: p.logoff.peek(self.window, &self.smoothing),
        })
    }
}
