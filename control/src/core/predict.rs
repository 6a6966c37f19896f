//! Double exponential smoothing of login and logoff rates ([0064]–[0065]).
//!
//! Observations are counts per window of Δt/10; a window with no event is a zero observation.
//! The update is lazy: a predictor catches up on the windows that passed whenever it is touched,
//! which gives exactly the values an eager update every Δt/10 would (up to `MAX_CATCH_UP`
//! windows, after which the prediction has decayed to zero and is set to it).

/// Windows replayed one by one when catching up; beyond that S and b are below 1e-40 anyway.
const MAX_CATCH_UP: u64 = 1_000;

/// Windows `Predictor::bound` folds at most before giving up (with α = 0.9 it needs one or two).
const BOUND_STEPS: u32 = 64;

/// Smoothing parameters shared by all predictors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smoothing {
    pub alpha: f64,
    pub beta: f64,
    /// Window length (Δt/10) in microseconds.
    pub window_micros: u64,
}

impl Smoothing {
    pub fn window_of(&self, micros: u64) -> u64 {
        micros / self.window_micros.max(1)
    }
}

/// What `Predictor::envelope` gives: the rates a predictor can give until its next observation,
/// by the window they are read in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Envelope {
    /// No less than any of them.
    max: f64,
    /// From this window on, each window's fold shrinks S by at least the factor 1−α...
    from: u64,
    /// ...from this S, read in window `from`.
    at: f64,
}

impl Envelope {
    /// No less than the rate read in window `w` (no observation since the envelope was taken).
    pub fn at_window(&self, w: u64, p: &Smoothing) -> f64 {
        if w <= self.from {
            return self.max;
        }
        // Each fold rounds (1−α)·S up by at most one part in 2^53, and the power rounds too:
        // the factor is raised by 1e-12 (far above both) and the result by one part in 10^9;
        // 1e-300 covers S stuck in the subnormal range, where rounding is absolute. A factor
        // below 1 makes fewer steps a larger decay, still a bound: 64 steps are plenty.
        let factor = (1.0 - p.alpha) + 1e-12;
        if factor >= 1.0 {
            return self.max;
        }
        let steps = (w - self.from).min(64) as i32;
        let decayed = self.at * factor.powi(steps) * (1.0 + 1e-9) + 1e-300;
        decayed.min(self.max)
    }
}

/// One smoothed rate, in events per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Predictor {
    /// S_t: the smoothed rate (the prediction).
    s: f64,
    /// b_t: the trend.
    b: f64,
    /// Events counted in `window` so far.
    count: u32,
    /// The window `count` belongs to.
    window: u64,
    /// Whether S₀ was set (the first completed window gives S₀ = y₀, b₀ = 0).
    started: bool,
}

impl Predictor {
    pub fn new(window: u64) -> Self {
        Predictor {
            window,
            ..Default::default()
        }
    }

    /// Count one event in window `w`.
    pub fn observe(&mut self, w: u64, p: &Smoothing) {
        self.catch_up(w, p);
        self.count = self.count.saturating_add(1);
    }

    /// The predicted rate (events/s) once the windows before `w` are folded in.
    pub fn rate(&mut self, w: u64, p: &Smoothing) -> f64 {
        if w > self.window && self.resting(p) {
            return 0.0;
        }
        self.catch_up(w, p);
        self.s
    }

    /// Whether every window folded from now on, until the next event, gives S = +0 exactly:
    /// S is 0 and the trend negative, and stays so (S' = max(0, (1−α)·b) with b shrinking by
    /// (1−β) a window, never down to a zero within `MAX_CATCH_UP` windows, after which S is set
    /// to 0). Reading the rate of such a predictor needs no catch-up: the windows are folded at
    /// its next event, with the same result. A proxy that has had no viewer come or go for a
    /// while is read at every DISTRIBUTE of its tier; without this, each read would replay up
    /// to a thousand windows.
    fn resting(&self, p: &Smoothing) -> bool {
        let (a, b) = (p.alpha, p.beta);
        if !(self.started && self.count == 0 && self.s == 0.0) {
            return false;
        }
        if !((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b)) {
            return false;
        }
        // The smallest pre-clamp S the folds can reach, with a wide margin for rounding.
        let last = self.b * (1.0 - b).powi(MAX_CATCH_UP as i32) * (1.0 - a);
        last < -1e-280
    }

    /// No less than any rate this predictor gives from now until its next observation.
    pub fn bound(&self, p: &Smoothing) -> f64 {
        self.envelope(p).max
    }

    /// No less than the rate read in window `w` or later, until the next observation: 0 for a
    /// predictor at rest (no fold gives more), else its envelope in `w`.
    pub fn bound_in(&self, w: u64, p: &Smoothing) -> f64 {
        if self.resting(p) {
            return 0.0;
        }
        self.envelope(p).at_window(w, p)
    }

    /// No less than the rate this predictor gives when read in any window from now until its
    /// next observation, by window. The windows are folded one by one with no event after the
    /// current one's: once the trend is not positive, S can only fall, by at least the factor
    /// 1−α a window (S' = max(0, (1−α)(S + b)) ≤ (1−α)S, and the trend stays ≤ 0), so the
    /// largest S met so far bounds every read, and the S reached then, decayed, bounds the reads
    /// of later windows. Infinite if the trend stays positive for long, or for a smoothing
    /// outside [0, 1].
    pub fn envelope(&self, p: &Smoothing) -> Envelope {
        let unbounded = Envelope {
            max: f64::INFINITY,
            from: u64::MAX,
            at: f64::INFINITY,
        };
        if !(0.0..=1.0).contains(&p.alpha) || !(0.0..=1.0).contains(&p.beta) {
            return unbounded;
        }
        let mut x = *self;
        let mut max = x.s;
        for _ in 0..BOUND_STEPS {
            let next = x.window + 1;
            x.catch_up(next, p);
            max = max.max(x.s);
            if x.started && x.b <= 0.0 {
                return Envelope {
                    max,
                    from: x.window,
                    at: x.s,
                };
            }
        }
        unbounded
    }

    /// Like [`Predictor::rate`] without changing the predictor (for read-only views).
    pub fn peek(&self, w: u64, p: &Smoothing) -> f64 {
        if w > self.window && self.resting(p) {
            return 0.0;
        }
        let mut copy = *self;
        copy.catch_up(w, p);
        copy.s
    }

    /// Whether a window with no event folds to S = +0 and b' = +0 + (1−β)·b, and so does every
    /// window after it: S is 0, the trend not positive, α and β in [0, 1] (then α·0 +
    /// (1−α)(0 + b) ≤ 0 is clamped to +0, β·(+0 − 0) is +0, and (1−β)·b stays ≤ 0).
    fn settled(&self, p: &Smoothing) -> bool {
        self.started
            && self.s == 0.0
            && self.b <= 0.0
            && (0.0..=1.0).contains(&p.alpha)
            && (0.0..=1.0).contains(&p.beta)
    }

    fn catch_up(&mut self, w: u64, p: &Smoothing) {
        if w <= self.window {
            return;
        }
        let secs = p.window_micros.max(1) as f64 / 1e6;
        let mut steps = 0;
        while self.window < w {
            if steps == MAX_CATCH_UP {
                self.s = 0.0;
                self.b = 0.0;
                self.window = w;
                break;
            }
            if self.count == 0 && self.settled(p) {
                // S stays +0 and only the trend moves: b' = +0 + (1−β)·b, the very fold below
                // with S = S' = +0 (a multiplication a window, not the whole fold: a predictor
                // last touched hundreds of windows ago is read at every regroup of its tier).
                // Adding +0 changes only a product of −0 (to +0), and a zero stays zero: the
                // products alone, with the sign of a zero fixed at the end, give the same bits.
                let n = (w - self.window).min(MAX_CATCH_UP - steps);
                let keep = 1.0 - p.beta;
                for _ in 0..n {
                    self.b *= keep;
                }
                if self.b == 0.0 {
                    self.b = 0.0;
                }
                self.s = 0.0;
                self.window += n;
                steps += n;
                continue;
            }
            let y = f64::from(self.count) / secs;
            self.count = 0;
            if self.started {
                // [0064] (1) S_t = α·y_t + (1−α)(S_{t−1} + b_{t−1}); B_{t−1} read as b_{t−1}.
                let prev = self.s;
                // A rate is never negative: clamp S at 0 (DESIGN "Smoothing").
                self.s = (p.alpha * y + (1.0 - p.alpha) * (prev + self.b)).max(0.0);
                // [0064] (2) b_t = β(S_t − S_{t−1}) + (1−β)·b_{t−1}.
                self.b = p.beta * (self.s - prev) + (1.0 - p.beta) * self.b;
            } else {
                // S₀ = y₀, b₀ = 0.
                self.s = y;
                self.b = 0.0;
                self.started = true;
            }
            self.window += 1;
            steps += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Smoothing {
        Smoothing {
            alpha: 0.9,
            beta: 0.1,
            window_micros: 1_000_000,
        }
    }

    #[test]
    fn first_window_sets_s0_and_zero_windows_decay() {
        let p = p();
        let mut x = Predictor::new(0);
        for _ in 0..300 {
            x.observe(0, &p);
        }
        // [0065]: 300 logins in the last window of one second: y = 300/s.
        assert_eq!(x.rate(1, &p), 300.0);
        // Next window with no login: S = 0.9·0 + 0.1·(300 + 0) = 30.
        let r = x.rate(2, &p);
        assert!((r - 30.0).abs() < 1e-9, "{r}");
        assert!(x.rate(1_000_000, &p) == 0.0);
    }

    #[test]
    fn lazy_equals_eager() {
        let p = p();
        let mut lazy = Predictor::new(0);
        let mut eager = Predictor::new(0);
        let events = [0u64, 0, 1, 5, 5, 5, 6, 20, 21, 21];
        for &w in &events {
            lazy.observe(w, &p);
        }
        let mut i = 0;
        for w in 0..30 {
            eager.rate(w, &p);
            while i < events.len() && events[i] == w {
                eager.observe(w, &p);
                i += 1;
            }
        }
        assert_eq!(lazy.rate(30, &p), eager.rate(30, &p));
        assert_eq!(lazy.peek(40, &p), eager.rate(40, &p));
    }

    /// The fold of one window as [0064] writes it, with no shortcut: what `catch_up` must give.
    fn fold_once(x: &mut Predictor, p: &Smoothing) {
        let y = f64::from(x.count) / (p.window_micros as f64 / 1e6);
        x.count = 0;
        if x.started {
            let prev = x.s;
            x.s = (p.alpha * y + (1.0 - p.alpha) * (prev + x.b)).max(0.0);
            x.b = p.beta * (x.s - prev) + (1.0 - p.beta) * x.b;
        } else {
            x.s = y;
            x.b = 0.0;
            x.started = true;
        }
        x.window += 1;
    }

    proptest::proptest! {
        /// Catching up many windows at once (the settled ones a multiplication each) gives,
        /// bit for bit, the windows folded one by one by the formula.
        #[test]
        fn catch_up_equals_the_formula_window_by_window(
            events in proptest::collection::vec((0u64..60, 1u32..8), 1..10),
            until in 0u64..1_200,
            alpha in 0.0f64..=1.0,
            beta in 0.0f64..=1.0,
        ) {
            let p = Smoothing { alpha, beta, window_micros: 100_000 };
            let mut events = events;
            events.sort();
            let mut lazy = Predictor::new(0);
            let mut reference = Predictor::new(0);
            for &(w, n) in &events {
                lazy.catch_up(w, &p);
                while reference.window < w {
                    fold_once(&mut reference, &p);
                }
                lazy.count += n;
                reference.count += n;
            }
            let end = events.last().unwrap().0 + until;
            lazy.catch_up(end, &p);
            // As `catch_up`: beyond `MAX_CATCH_UP` windows the rate is set to 0.
            let mut steps = 0;
            while reference.window < end {
                if steps == MAX_CATCH_UP {
                    reference.s = 0.0;
                    reference.b = 0.0;
                    reference.window = end;
                    break;
                }
                fold_once(&mut reference, &p);
                steps += 1;
            }
            proptest::prop_assert_eq!(lazy.s.to_bits(), reference.s.to_bits());
            proptest::prop_assert_eq!(lazy.b.to_bits(), reference.b.to_bits());
            proptest::prop_assert_eq!(lazy.window, reference.window);
        }

        /// Reading a predictor at any time, resting or not, gives the rate an eager update gives,
        /// sign of zero included; and its bound is never below a rate read before its next
        /// event.
        #[test]
        fn reads_equal_eager_and_stay_under_the_bound(
            events in proptest::collection::vec((0u64..40, 0u32..6), 0..12),
            reads in proptest::collection::vec(0u64..900, 1..8),
            alpha in 0.05f64..1.0,
            beta in 0.0f64..0.95,
        ) {
            let p = Smoothing { alpha, beta, window_micros: 100_000 };
            let mut events = events;
            events.sort();
            let mut lazy = Predictor::new(0);
            let mut eager = Predictor::new(0);
            let mut w = 0;
            let mut bound = lazy.bound(&p);
            let mut envelope = lazy.envelope(&p);
            let mut reads = reads;
            reads.sort();
            let mut r = reads.into_iter().peekable();
            let mut e = events.into_iter().peekable();
            while r.peek().is_some() || e.peek().is_some() {
                let next_read = r.peek().copied().unwrap_or(u64::MAX);
                let next_event = e.peek().map_or(u64::MAX, |x| x.0 * 50);
                if next_read < next_event {
                    while w < next_read {
                        w += 1;
                        eager.catch_up(w, &p);
                    }
                    let got = lazy.rate(next_read, &p);
                    proptest::prop_assert_eq!(got.to_bits(), eager.s.to_bits());
                    proptest::prop_assert!(got <= bound, "{got} > {bound}");
                    let by_window = envelope.at_window(next_read, &p);
                    proptest::prop_assert!(got <= by_window, "{got} > {by_window} in window {next_read}");
                    r.next();
                } else {
                    let (_, n) = e.next().unwrap();
                    while w < next_event {
                        w += 1;
                        eager.catch_up(w, &p);
                    }
                    for _ in 0..n {
                        lazy.observe(next_event, &p);
                        eager.observe(next_event, &p);
                    }
                    bound = lazy.bound(&p);
                    envelope = lazy.envelope(&p);
                }
            }
        }
    }
}
