//! Tiering of a source's overlay: regions, then tiers by distance to the source, with capacity
//! and operator pins ([0024], [0049]–[0050]).
//!
//! Reading of the seed (it gives no formula): within a region, proxies are sorted by their
//! distance to the source (reported RTT, else configured coordinates), greater capacity first at
//! equal distance, then by id. A tier is a band of proxies whose distances lie within
//! `tier_spread_ms` of the band's nearest member; the next farther proxy opens the next tier, up
//! to `max_tiers`. A proxy with no known distance joins the deepest tier (it serves viewers and
//! pulls from whatever is above). If a tier's combined connection capacity could not feed every
//! proxy of the tier below, the nearest proxies of the tier below move up ([0024]: capacity).
//! Pins set by the operator put a proxy into a tier whatever its distance; tiers left empty are
//! dropped, so pins are ordinal.

use std::collections::BTreeMap;

use crate::protocol::ProxyId;

/// One proxy as tiering sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<R = String> {
    pub id: ProxyId,
    pub region: R,
    pub connections: u32,
    /// Distance to the source, if known.
    pub distance: Option<f64>,
    /// Tier pinned by the operator (1-based).
    pub pin: Option<u32>,
}

/// Regions → tiers (index 0 is tier 1) → proxies sorted by id.
pub type Tiers<R = String> = BTreeMap<R, Vec<Vec<ProxyId>>>;

/// Partition `candidates` into regions and tiers.
pub fn compute<R: Ord + Clone>(
    candidates: &[Candidate<R>],
    spread: f64,
    max_tiers: u32,
) -> Tiers<R> {
    let max_tiers = max_tiers.max(1) as usize;
    let mut by_region: BTreeMap<&R, Vec<&Candidate<R>>> = BTreeMap::new();
    for c in candidates {
        by_region.entry(&c.region).or_default().push(c);
    }
    let mut out = Tiers::new();
    for (region, members) in by_region {
        let mut measured: Vec<&Candidate<R>> = members
            .iter()
            .copied()
            .filter(|c| c.pin.is_none() && c.distance.is_some())
            .collect();
        measured.sort_by(|a, b| {
            let (da, db) = (a.distance.unwrap_or(0.0), b.distance.unwrap_or(0.0));
            da.total_cmp(&db)
                .then(b.connections.cmp(&a.connections))
                .then(a.id.cmp(&b.id))
        });
        // Bands of distance ([0049]: tiers by distance from the source).
        let mut tiers: Vec<Vec<&Candidate<R>>> = Vec::new();
        let mut band_start = f64::NEG_INFINITY;
        for c in measured {
            let d = c.distance.unwrap_or(0.0);
            if tiers.is_empty() || (d - band_start > spread && tiers.len() < max_tiers) {
                tiers.push(Vec::new());
                band_start = d;
            }
            if let Some(last) = tiers.last_mut() {
                last.push(c);
            }
        }
        // Unknown distance: the deepest tier.
        for c in members
            .iter()
            .copied()
            .filter(|c| c.pin.is_none() && c.distance.is_none())
        {
            if tiers.is_empty() {
                tiers.push(Vec::new());
            }
            if let Some(last) = tiers.last_mut() {
                last.push(c);
            }
        }
        // Capacity: a tier must be able to feed the tier below ([0024]).
        for k in 0..tiers.len().saturating_sub(1) {
            loop {
                let cap: u64 = tiers[k].iter().map(|c| u64::from(c.connections)).sum();
                let below = tiers[k + 1].len() as u64;
                if cap >= below || tiers[k + 1].len() <= 1 {
                    break;
                }
                // The nearest of the tier below moves up (they are sorted by distance).
                let moved = tiers[k + 1].remove(0);
                tiers[k].push(moved);
            }
        }
        let mut ids: Vec<Vec<ProxyId>> = tiers
            .into_iter()
            .map(|t| t.into_iter().map(|c| c.id).collect())
            .collect();
        // Operator pins.
        for c in members.iter().filter(|c| c.pin.is_some()) {
            let t = c.pin.unwrap_or(1).max(1) as usize;
            while ids.len() < t {
                ids.push(Vec::new());
            }
            ids[t - 1].push(c.id);
        }
        ids.retain(|t| !t.is_empty());
        for t in &mut ids {
            t.sort();
        }
        out.insert(region.clone(), ids);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u32, region: &str, d: Option<f64>, pin: Option<u32>) -> Candidate {
        Candidate {
            id: ProxyId(id),
            region: region.into(),
            connections: 3,
            distance: d,
            pin,
        }
    }

    #[test]
    fn bands_by_distance_regions_and_pins() {
        let cands = vec![
            c(13, "a", Some(11.0), None),
            c(11, "a", Some(10.0), None),
            c(21, "a", Some(30.0), None),
            c(31, "a", Some(50.0), None),
            c(32, "a", None, None),
            c(99, "a", Some(50.0), Some(1)),
            c(201, "b", Some(5.0), None),
        ];
        let t = compute(&cands, 5.0, 8);
        let a = &t["a"];
        assert_eq!(a[0], vec![ProxyId(11), ProxyId(13), ProxyId(99)]);
        assert_eq!(a[1], vec![ProxyId(21)]);
        assert_eq!(a[2], vec![ProxyId(31), ProxyId(32)]);
        assert_eq!(t["b"], vec![vec![ProxyId(201)]]);
    }

    #[test]
    fn capacity_moves_proxies_up_and_max_tiers_caps() {
        let mut cands: Vec<Candidate> = (0..8)
            .map(|i| c(i, "r", Some(100.0 + f64::from(i) * 0.1), None))
            .collect();
        cands.push(c(100, "r", Some(0.0), None));
        // One proxy of capacity 3 cannot feed 8: the nearest move up.
        let t = compute(&cands, 1.0, 8);
        assert_eq!(t["r"].len(), 2);
        assert!(t["r"][0].len() >= 2);
        let total: usize = t["r"].iter().map(Vec::len).sum();
        assert_eq!(total, 9);
        let flat: Vec<Candidate> = (0..10)
            .map(|i| c(i, "r", Some(f64::from(i) * 100.0), None))
            .collect();
        assert_eq!(compute(&flat, 1.0, 4)["r"].len(), 4);
    }
}
