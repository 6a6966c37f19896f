//! What the core emits: messages to proxies and decisions with their reasons.

use super::*;

/// `[P11, P21]`: proxy ids for decision reasons.
pub(super) fn id_list(ids: impl Iterator<Item = ProxyId>) -> String {
    use std::fmt::Write;
    // Written into one string: a DISTRIBUTE lists its whole farm, one allocation per id showed.
    let mut out = String::from("[");
    for (k, id) in ids.enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{id}");
    }
    out.push(']');
    out
}

impl Coordinator {
    pub(super) fn log(
        &mut self,
        rule: Rule,
        stream: Option<&str>,
        proxy: Option<ProxyId>,
        reason: String,
    ) {
        self.out.push(Command::Log(Decision {
            at: self.now,
            rule,
            stream: stream.map(str::to_string),
            proxy,
            reason,
        }));
    }

    pub(super) fn send(&mut self, px: Px, msg: PncMsg) {
        self.out.push(Command::Send {
            to: self.proxies[px].id,
            msg,
        });
    }

    /// Refuse `id` (a hello or message the core does not take): the service sends it and
    /// closes the connection; the proxy's agent reconnects after a back-off and registers again.
    pub(super) fn refuse(&mut self, id: ProxyId, reason: Refusal, why: &str) {
        self.counters.protocol_errors += 1;
        self.log(
            Rule::Protocol,
            None,
            Some(id),
            format!("{why}: refused ({reason}); the service closes its connection"),
        );
        self.out.push(Command::Send {
            to: id,
            msg: PncMsg::Refused(reason),
        });
    }
}
