//! What the agent holds about one stream at this proxy: its role (origin and/or activated by
//! the PNC), sinks, load, phase, and what the PNC has been told.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::Time;
use crate::core::predict::Smoothing;
use crate::protocol::{Peer, ProxyId, SourceInfo, StreamState};

use super::decide::{Phase, Trigger};
use super::load::LoginRates;

/// The PNC's activation of a stream here ([0030]).
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    pub info: SourceInfo,
    pub tier: u32,
    pub parents: Vec<Peer>,
    pub phase: Phase,
    /// Whether new viewers may be sent here ([0030], [0035]).
    pub accepting: bool,
    /// Whether it pulls from its parents (it has sinks); a standby does not ([0054]).
    pub pulling: bool,
}

/// One stream at this proxy.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    /// Set while a source publishes the stream here (this proxy is its origin).
    pub source: Option<SourceInfo>,
    /// Set while the PNC has it active here.
    pub activation: Option<Activation>,
    pub viewers: u32,
    pub children: BTreeSet<ProxyId>,
    /// Bits/s the dataplane measured for this stream's sinks, if it reports them.
    pub measured_bps: Option<u64>,
    pub rates: LoginRates,
    pub distribute: Trigger,
    /// The load grew since the last decision: DISTRIBUTE looks ahead ([0054]: in the LOGIN
    /// process).
    pub grew: bool,
    pub consolidate: Trigger,
    /// Parents to probe ([0066]).
    pub monitor: Vec<Peer>,
    /// Parents whose link is down → whether the PNC was told (LinkDowngrade).
    pub links_down: BTreeMap<ProxyId, bool>,
    /// Child proxies the PNC was told about (LOGIN sent, no LOGOFF since).
    pub told_children: BTreeSet<ProxyId>,
    /// Whether the PNC was told the source publishes here (StreamAnnounce sent).
    pub told_source: bool,
}

impl StreamRecord {
    pub fn new(now: Time, smoothing: &Smoothing) -> Self {
        Self {
            source: None,
            activation: None,
            viewers: 0,
            children: BTreeSet::new(),
            measured_bps: None,
            rates: LoginRates::new(now, smoothing),
            distribute: Trigger::default(),
            grew: false,
            consolidate: Trigger::default(),
            monitor: Vec::new(),
            links_down: BTreeMap::new(),
            told_children: BTreeSet::new(),
            told_source: false,
        }
    }

    /// Sinks: viewers and child proxies (DESIGN "Reading the seed": load).
    pub fn load(&self) -> u32 {
        let children = u32::try_from(self.children.len()).unwrap_or(u32::MAX);
        self.viewers.saturating_add(children)
    }

    /// The stream's nominal bitrate, from the source here or the activation.
    pub fn bitrate(&self) -> u64 {
        self.source
            .as_ref()
            .or(self.activation.as_ref().map(|a| &a.info))
            .map_or(0, |i| i.bitrate_bps)
    }

    /// Bits/s out for this stream: measured, or sinks × bitrate.
    pub fn bits_per_sec(&self) -> u64 {
        self.measured_bps
            .unwrap_or_else(|| u64::from(self.load()).saturating_mul(self.bitrate()))
    }

    /// Bits/s one more sink costs.
    pub fn per_sink_bps(&self) -> u64 {
        match (self.measured_bps, self.load()) {
            (Some(bps), load) if load > 0 && bps > 0 => bps / u64::from(load),
            _ => self.bitrate(),
        }
    }

    /// Whether the PNC should know this stream (origin here or activated here).
    pub fn is_known_to_pnc(&self) -> bool {
        self.source.is_some() || self.activation.is_some()
    }

    /// Whether the record can be dropped: no role, no sinks left, and no child proxy the PNC
    /// still has to be told has left.
    pub fn is_empty(&self) -> bool {
        !self.is_known_to_pnc()
            && self.viewers == 0
            && self.children.is_empty()
            && self.told_children.is_empty()
    }

    pub fn accepting(&self) -> bool {
        match &self.activation {
            Some(a) => a.accepting,
            // An origin takes what connects to it; the PNC decides who does.
            None => self.source.is_some(),
        }
    }

    /// The stream as the Hello reports it, so that a restarted PNC rebuilds it ([0031]).
    pub fn state(&self, name: &str) -> StreamState {
        StreamState {
            stream: name.to_string(),
            source: self.source.clone(),
            tier: self.activation.as_ref().map_or(0, |a| a.tier),
            parents: self
                .activation
                .as_ref()
                .map(|a| a.parents.iter().map(|p| p.id).collect())
                .unwrap_or_default(),
            children: self.children.iter().copied().collect(),
            viewers: self.viewers,
            accepting: self.accepting(),
        }
    }

    /// Enter `phase` (a PNC order); both decisions may fire once more.
    pub fn set_phase(&mut self, phase: Phase) -> bool {
        let Some(a) = self.activation.as_mut() else {
            return false;
        };
        if a.phase == phase {
            return false;
        }
        a.phase = phase;
        self.distribute.new_phase();
        self.consolidate.new_phase();
        true
    }
}
