//! The core's own identities: indices of proxies and streams in its tables, and regions
//! interned once so that no key holds a region's name.

use std::collections::HashMap;

/// Index of a registered proxy in the coordinator's table (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Px(pub(super) u32);

impl Px {
    pub(super) fn index(self) -> usize {
        self.0 as usize
    }
}

/// Index of a stream (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Sx(pub(super) u32);

/// Identifier of a farm: the proxies activated together by one decision ([0042]).
pub(super) type FarmId = u64;

/// A region, interned: keys and records hold this id; the name is looked up for views and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct RegionId(u32);

/// Every region name the core has seen, each with its id. Names are never forgotten: there are
/// few regions, and an id must stay valid in every record that holds it.
#[derive(Debug, Default)]
pub(super) struct Regions {
    ids: HashMap<String, RegionId>,
    names: Vec<String>,
}

impl Regions {
    /// The id of `name`, interned on first sight.
    pub(super) fn intern(&mut self, name: &str) -> RegionId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = RegionId(self.names.len() as u32);
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// The id of `name` if some proxy or rule ever named it.
    pub(super) fn get(&self, name: &str) -> Option<RegionId> {
        self.ids.get(name).copied()
    }

    pub(super) fn name(&self, id: RegionId) -> &str {
        &self.names[id.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_gives_one_id_per_name() {
        let mut r = Regions::default();
        let eu = r.intern("eu");
        let us = r.intern("us");
        assert_ne!(eu, us);
        assert_eq!(r.intern("eu"), eu);
        assert_eq!(r.get("us"), Some(us));
        assert_eq!(r.get("asia"), None);
        assert_eq!(r.name(eu), "eu");
    }
}
