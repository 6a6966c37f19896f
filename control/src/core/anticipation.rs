//! An anticipated media event ([0033]): "the PNC may activate the minimum number of proxies
//! required at each tier to ensure coverage of all anticipated endusers for a given media
//! event". The operator announces a stream's expected audience in a region and how fast it will
//! arrive; the core activates, as one farm ([0042]), the bottom-tier proxies that the first ΔT
//! of those arrivals need, with their parents in every tier above ([0035]).
//!
//! Why ΔT's arrivals and not the whole audience: ΔT is the time to bring a proxy up ([0058]),
//! so once the crowd is arriving the predictive farms ([0039]–[0041], [0059]) take over from
//! the first DISTRIBUTE, and whatever was activated beyond that horizon would stand idle
//! until the crowd reached it. Without a ramp (0 s) the whole audience is covered at once,
//! [0033] read literally.

use super::*;

impl Coordinator {
    pub(super) fn anticipate(
        &mut self,
        stream: String,
        region: Option<String>,
        viewers: u64,
        ramp_secs: f64,
    ) {
        let Some(sx) = self.stream_ids.get(&stream).copied() else {
            self.log(
                Rule::Anticipate,
                Some(&stream),
                None,
                "anticipated event for a stream no source publishes: nothing activated [0033]"
                    .into(),
            );
            return;
        };
        let key = self.streams[&sx].overlay.clone();
        self.ensure_overlay(&key);
        let regions: Vec<RegionId> = match &region {
            Some(name) => self
                .regions
                .get(name)
                .filter(|r| {
                    self.overlays
                        .get(&key)
                        .is_some_and(|o| o.tiers.contains_key(r))
                })
                .into_iter()
                .collect(),
            None => self
                .overlays
                .get(&key)
                .map(|o| o.tiers.keys().copied().collect())
                .unwrap_or_default(),
        };
        if regions.is_empty() {
            self.log(
                Rule::Anticipate,
                Some(&stream),
                None,
                format!(
                    "anticipated event in {}: the source's overlay has no proxy there; nothing activated [0033]",
                    region.as_deref().unwrap_or("every region")
                ),
            );
            return;
        }
        // Without a region, the audience is spread evenly over the overlay's regions.
        let share = viewers.div_ceil(regions.len() as u64);
        for r in regions {
            self.cover(sx, r, share, ramp_secs);
        }
    }

    /// Activates in `region`'s bottom tier of `sx` what the first ΔT of `viewers` arriving over
    /// `ramp_secs` need beyond the room the tier has.
    fn cover(&mut self, sx: Sx, region: RegionId, viewers: u64, ramp_secs: f64) {
        let name = self.sname(sx);
        let bottom = self.bottom_tier(sx, region);
        let horizon = if ramp_secs > 0.0 {
            let rate = viewers as f64 / ramp_secs;
            (rate * self.delta_t_secs()).ceil().min(viewers as f64) as u64
        } else {
            viewers
        };
        self.refresh_accepting();
        let room = self.tier_room(sx, region, bottom);
        let mut short = horizon.saturating_sub(room);
        let region_name = self.regions.name(region).to_string();
        if short == 0 {
            self.log(
                Rule::Anticipate,
                Some(&name),
                None,
                format!(
                    "{viewers} viewers anticipated in {region_name} over {ramp_secs} s: the first ΔT's {horizon} fit the room {room} of tier {bottom}; nothing activated [0033]"
                ),
            );
            return;
        }
        // One farm, so that its members take the crowd round-robin and its first DISTRIBUTE is
        // the farm's ([0042]); reacting one proxy at a time has no farms, each is its own.
        let one_at_a_time = self.config.growth == Growth::OneAtATime;
        let farm = self.next_farm_id();
        let mut activated = 0u32;
        while short > 0 {
            let f = if one_at_a_time && activated > 0 {
                self.next_farm_id()
            } else {
                farm
            };
            let Some(q) = self.activate(sx, region, bottom, f, "anticipated event [0033]") else {
                break;
            };
            activated += 1;
            short = short.saturating_sub(u64::from(self.max_s(sx, q).max(1)));
        }
        if !one_at_a_time {
            // The farm counts as the last one activated: its DISTRIBUTE measures the arrival
            // rate over the time it took to fill ([0039]) like any other farm's.
            self.farm_activated(sx, region, bottom, farm, activated);
        }
        self.log(
            Rule::Anticipate,
            Some(&name),
            None,
            format!(
                "{viewers} viewers anticipated in {region_name} over {ramp_secs} s: {activated} proxies activated in tier {bottom} for the first ΔT's {horizon} beyond the room {room}{} [0033]",
                if short > 0 {
                    " (no idle proxy left for the rest)"
                } else {
                    ""
                }
            ),
        );
    }
}
