//! What the core emits: messages to proxies and decisions with their reasons.

use super::*;

/// `[P11, P21]`: proxy ids for decision reasons.
pub(super) fn id_list(ids: impl Iterator<Item = ProxyId>) -> String {
    // Written into one string: a DISTRIBUTE lists its whole farm, one allocation per id showed.
    let mut out = String::with_capacity(2 + 8 * ids.size_hint().0);
    out.push('[');
    for (k, id) in ids.enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        push_id(&mut out, id);
    }
    out.push(']');
    out
}

/// `id` as its `Display` writes it (`P` and the number), without the formatting machinery: a
/// regroup's log line lists some fifty of them.
fn push_id(out: &mut String, id: ProxyId) {
    let mut digits = [0u8; 10];
    let mut n = id.0;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push('P');
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The list reads as the ids' `Display`, whatever their number of digits.
    #[test]
    fn id_list_writes_ids_as_display_does() {
        let ids = [0, 7, 10, 99, 1_000, 123_456, u32::MAX].map(ProxyId);
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(id_list(ids.into_iter()), format!("[{}]", shown.join(", ")));
        assert_eq!(id_list(std::iter::empty()), "[]");
    }
}
