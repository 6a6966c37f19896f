//! The control connection's life: connect, register (Hello with every stream carried),
//! Welcome or Refused, back-off while the PNC is away, and the catch-up after a Welcome.

use crate::core::Time;
use crate::protocol::{Child, Hello, PROTOCOL_VERSION, ProxyMsg, Refusal, Rtt};

use super::{Action, Agent};

/// The state of the control connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Link {
    /// Waiting out the back-off before the next [`Action::Connect`].
    Waiting { retry_at: Time },
    /// [`Action::Connect`] issued at `since`.
    Connecting { since: Time },
    /// Hello sent, waiting for Welcome; the attempt started at `since`.
    Registering { since: Time },
    /// Welcomed: heartbeats every `every_micros`.
    Up {
        every_micros: u64,
        next_heartbeat: Time,
    },
}

impl Agent {
    pub(super) fn register_timeout_micros(&self) -> u64 {
        self.config.register_timeout_ms.saturating_mul(1000).max(1)
    }

    pub(super) fn run_timers(&mut self) {
        let now = self.now;
        match self.link {
            Link::Waiting { retry_at } if retry_at <= now => {
                self.link = Link::Connecting { since: now };
                self.out.push(Action::Connect);
            }
            Link::Connecting { since } | Link::Registering { since }
                if since.plus_micros(self.register_timeout_micros()) <= now =>
            {
                self.out.push(Action::Close);
                self.retry_later("no Welcome within the registration timeout");
            }
            Link::Up {
                every_micros,
                next_heartbeat,
            } if next_heartbeat <= now => {
                self.send_heartbeat();
                // Next beat on the interval's grid after now (a late driver skips beats rather
                // than bursting them).
                let mut next = next_heartbeat.plus_micros(every_micros);
                if next <= now {
                    next = now.plus_micros(every_micros);
                }
                self.link = Link::Up {
                    every_micros,
                    next_heartbeat: next,
                };
            }
            _ => {}
        }
    }

    /// Schedule the next attempt after a back-off.
    pub(super) fn retry_later(&mut self, why: &str) {
        let delay = self.backoff.next_delay_micros();
        self.wait(delay, why);
    }

    pub(super) fn wait(&mut self, delay_micros: u64, why: &str) {
        let retry_at = self.now.plus_micros(delay_micros);
        self.link = Link::Waiting { retry_at };
        self.log(format!(
            "control: {why}; reconnecting in {} ms (attempt {})",
            delay_micros / 1000,
            self.backoff.attempts()
        ));
    }

    pub(super) fn connected(&mut self) {
        match self.link {
            Link::Connecting { since } => {
                let hello = self.hello();
                self.send(ProxyMsg::Hello(hello));
                self.link = Link::Registering { since };
            }
            _ => self.log("control: Connected without a pending Connect, ignored".into()),
        }
    }

    pub(super) fn disconnected(&mut self, why: &str) {
        match self.link {
            // Already backing off (e.g. after a refusal we closed): nothing more to do.
            Link::Waiting { .. } => {}
            Link::Connecting { .. } | Link::Registering { .. } | Link::Up { .. } => {
                self.retry_later(why);
            }
        }
    }

    pub(super) fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            token: self.config.token.clone(),
            proxy: self.config.proxy,
            name: self.config.name.clone(),
            data_addr: self.config.data_addr,
            region: self.config.region.clone(),
            capacity: self.config.capacity,
            streams: self.stream_states(),
            rtts: self
                .rtts
                .iter()
                .map(|(&peer, &micros)| Rtt { peer, micros })
                .collect(),
            decides: true,
        }
    }

    pub(super) fn welcomed(&mut self, version: u32, heartbeat_ms: u32) {
        if !matches!(self.link, Link::Registering { .. }) {
            self.log("control: Welcome outside registration, ignored".into());
            return;
        }
        if version != PROTOCOL_VERSION {
            self.out.push(Action::Close);
            let delay = self.backoff.refused_delay_micros();
            self.wait(
                delay,
                &format!("Welcome speaks protocol {version}, this proxy {PROTOCOL_VERSION}"),
            );
            return;
        }
        let heartbeat_ms = if heartbeat_ms == 0 {
            self.log("control: Welcome with a zero heartbeat interval; using 1000 ms".into());
            1000
        } else {
            heartbeat_ms
        };
        self.backoff.reset();
        let every_micros = u64::from(heartbeat_ms) * 1000;
        self.link = Link::Up {
            every_micros,
            next_heartbeat: self.now.plus_micros(every_micros),
        };
        self.log(format!(
            "control: registered as {} (heartbeat every {heartbeat_ms} ms)",
            self.config.proxy
        ));
        self.catch_up();
        // The PNC sees the load at once, not one interval later.
        self.send_heartbeat();
    }

    pub(super) fn refused(&mut self, reason: Refusal) {
        if !matches!(self.link, Link::Registering { .. } | Link::Up { .. }) {
            self.log(format!("control: Refused ({reason}) outside registration"));
        }
        self.out.push(Action::Close);
        match reason {
            // Retrying cannot cure these until an operator acts: never faster than the cap.
            Refusal::VersionMismatch { .. } | Refusal::BadToken | Refusal::UnknownProxy(_) => {
                let delay = self.backoff.refused_delay_micros();
                self.wait(delay, &format!("refused by the PNC: {reason}"));
            }
            _ => self.retry_later(&format!("refused by the PNC: {reason}")),
        }
    }

    /// After Welcome: tell the PNC what changed while it could not be told.
    pub(super) fn catch_up(&mut self) {
        let mut msgs = Vec::new();
        for stream in std::mem::take(&mut self.ended_untold) {
            if self.streams.get(&stream).is_none_or(|r| r.source.is_none()) {
                msgs.push(ProxyMsg::StreamEnd { stream });
            }
        }
        for (name, r) in &mut self.streams {
            if let Some(source) = &r.source
                && !r.told_source
            {
                msgs.push(ProxyMsg::StreamAnnounce {
                    stream: name.clone(),
                    source: source.clone(),
                });
                r.told_source = true;
            }
            for &gone in r.told_children.difference(&r.children) {
                msgs.push(ProxyMsg::Logoff {
                    stream: name.clone(),
                    child: Child::Proxy(gone),
                });
            }
            for &new in r.children.difference(&r.told_children) {
                msgs.push(ProxyMsg::Login {
                    stream: name.clone(),
                    child: Child::Proxy(new),
                });
            }
            r.told_children = r.children.clone();
            // A restarted PNC has forgotten the links reported down: report them again.
            for (&parent, told) in &mut r.links_down {
                msgs.push(ProxyMsg::LinkDowngrade {
                    stream: name.clone(),
                    parent,
                });
                *told = true;
            }
        }
        for m in msgs {
            self.send(m);
        }
    }
}
