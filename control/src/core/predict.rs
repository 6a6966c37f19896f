//! Double exponential smoothing of login and logoff rates ([0064]–[0065]).
//!
//! Observations are counts per window of Δt/10; a window with no event is a zero observation.
//! The update is lazy: a predictor catches up on the windows that passed whenever it is touched,
//! which gives exactly the values an eager update every Δt/10 would (up to `MAX_CATCH_UP`
//! windows, after which the prediction has decayed to zero and is set to it).

/// Windows replayed one by one when catching up; beyond that S and b are below 1e-40 anyway.
const MAX_CATCH_UP: u64 = 1_000;

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
        self.catch_up(w, p);
        self.s
    }

    /// Like [`Predictor::rate`] without changing the predictor (for read-only views).
    pub fn peek(&self, w: u64, p: &Smoothing) -> f64 {
        let mut copy = *self;
        copy.catch_up(w, p);
        copy.s
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
}
