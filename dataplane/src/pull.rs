//! The parents of one pulled stream: which connections to open and when, which to drop, and
//! whether a frame that jumps ahead may be published. A pure state machine with explicit time
//! (µs); the reactor opens and closes the sockets it names and reports what they did.
//!
//! - **Redundant parents** ([0029], [0044]): one connection per parent, all at once. A frame is
//!   one frame whatever parent delivered it (the stream window drops copies by sequence number),
//!   so losing a parent while another delivers costs nothing.
//! - **Back-off.** A connection that fails or ends is retried from the next sequence the stream
//!   needs, after a capped exponential back-off ([`BACKOFF_MIN_US`] doubling up to
//!   [`BACKOFF_MAX_US`]), reset once the parent delivers again, for as long as the order stands.
//! - **Make-before-break** ([0029], [0046]): [`ParentSet::switch`] opens the new parents and
//!   keeps the old ones that deliver; an old one is dropped when a new one delivers in order (a
//!   frame the stream already has or the very next one), or when it dies (then it is not
//!   retried). An old one that is not delivering is dropped at once: it carries nothing to wait
//!   for.
//! - **Jumps.** A parent whose frame is ahead of the next sequence (its window had moved on) is
//!   not followed while another parent delivered in order within [`IN_ORDER_US`]: the window
//!   would restart there and the frames in between, which the other parent is about to
//!   deliver, would be lost. Its connection is asked again from the next sequence instead
//!   (after [`BACKOFF_MIN_US`]), so that it holds those frames should the other parent die.
//!   Alone, it is followed (the jump is counted by the stream's writer).

use crate::orders::ParentAddr;

/// The first retry waits this long.
pub const BACKOFF_MIN_US: u64 = 100_000;
/// Retries wait at most this long.
pub const BACKOFF_MAX_US: u64 = 2_000_000;
/// A parent that delivered in order this recently holds back another parent's jump.
pub const IN_ORDER_US: u64 = 1_000_000;

/// Where one parent's link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No connection; open one at `retry_at`.
    Waiting { retry_at: u64 },
    /// A connection is open (connecting, asking, or reading frames) and has delivered no frame
    /// yet.
    Connecting,
    /// The connection delivers frames.
    Delivering,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    parent: ParentAddr,
    state: LinkState,
    /// Failures in a row since it last delivered (the back-off exponent).
    failures: u32,
    /// An old parent of a switch: dropped once a new one delivers in order, never retried.
    retiring: bool,
    /// When it last delivered a frame in order.
    in_order_us: Option<u64>,
}

/// The parents of one stream and their links.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentSet {
    links: Vec<Link>,
}

/// What became of a link whose connection was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// Retried at `at`; `first` when the link worked until now (it delivered, or this is its
    /// first failure): the loss worth reporting, once per outage.
    RetryAt { at: u64, first: bool },
    /// Not retried: it was an old parent of a switch, or is no parent of the stream any more.
    Dropped,
}

fn backoff_us(failures: u32) -> u64 {
    BACKOFF_MIN_US
        .saturating_mul(1u64 << failures.min(20))
        .min(BACKOFF_MAX_US)
}

impl ParentSet {
    /// Pulls from `parents`, every one of them due at once.
    pub fn new(parents: &[ParentAddr], now_us: u64) -> Self {
        let mut set = Self::default();
        for &p in parents {
            set.add(p, now_us);
        }
        set
    }

    fn add(&mut self, parent: ParentAddr, now_us: u64) {
        if self.links.iter().any(|l| l.parent == parent) {
            return;
        }
        self.links.push(Link {
            parent,
            state: LinkState::Waiting { retry_at: now_us },
            failures: 0,
            retiring: false,
            in_order_us: None,
        });
    }

    fn link(&mut self, parent: ParentAddr) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.parent == parent)
    }

    pub fn parents(&self) -> impl Iterator<Item = ParentAddr> + '_ {
        self.links.iter().map(|l| l.parent)
    }

    pub fn state(&self, parent: ParentAddr) -> Option<LinkState> {
        self.links
            .iter()
            .find(|l| l.parent == parent)
            .map(|l| l.state)
    }

    /// The parents whose connection is due at `now_us`: each is `Connecting` from now on, and
    /// the caller opens its connection.
    pub fn due(&mut self, now_us: u64) -> Vec<ParentAddr> {
        let mut open = Vec::new();
        for l in &mut self.links {
            if matches!(l.state, LinkState::Waiting { retry_at } if retry_at <= now_us) {
                l.state = LinkState::Connecting;
                open.push(l.parent);
            }
        }
        open
    }

    /// When the next connection is due, if one waits.
    pub fn next_due(&self) -> Option<u64> {
        self.links
            .iter()
            .filter_map(|l| match l.state {
                LinkState::Waiting { retry_at } => Some(retry_at),
                _ => None,
            })
            .min()
    }

    /// True while some parent delivers.
    pub fn any_delivering(&self) -> bool {
        self.links.iter().any(|l| l.state == LinkState::Delivering)
    }

    /// `parent` delivered a frame, `in_order` when it was one the stream already has or the
    /// very next one (not a jump ahead). Returns the old parents of a switch to drop now:
    /// their connections are closed by the caller, and they are no parents any more.
    pub fn delivered(
        &mut self,
        parent: ParentAddr,
        in_order: bool,
        now_us: u64,
    ) -> Vec<ParentAddr> {
        let Some(l) = self.link(parent) else {
            return Vec::new();
        };
        l.state = LinkState::Delivering;
        l.failures = 0;
        if !in_order {
            return Vec::new();
        }
        l.in_order_us = Some(now_us);
        if l.retiring {
            return Vec::new();
        }
        // [0046] A new parent delivers in order: the old ones may go.
        let (gone, kept): (Vec<Link>, Vec<Link>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|l| l.retiring);
        self.links = kept;
        gone.into_iter().map(|l| l.parent).collect()
    }

    /// `parent`'s connection failed or ended.
    pub fn lost(&mut self, parent: ParentAddr, now_us: u64) -> Lost {
        let Some(i) = self.links.iter().position(|l| l.parent == parent) else {
            return Lost::Dropped;
        };
        if self.links[i].retiring {
            self.links.remove(i);
            return Lost::Dropped;
        }
        let l = &mut self.links[i];
        let retry_at = now_us + backoff_us(l.failures);
        let first = l.failures == 0;
        l.failures = l.failures.saturating_add(1);
        l.state = LinkState::Waiting { retry_at };
        Lost::RetryAt {
            at: retry_at,
            first,
        }
    }

    /// [0029], [0046] Pull from `parents` instead, make-before-break. Returns the old parents to
    /// drop at once (not delivering: nothing to wait for); those delivering stay until a new
    /// parent delivers in order or they die. A parent in both sets is kept as it is.
    pub fn switch(&mut self, parents: &[ParentAddr], now_us: u64) -> Vec<ParentAddr> {
        let mut drop_now = Vec::new();
        self.links.retain_mut(|l| {
            if parents.contains(&l.parent) {
                l.retiring = false;
                return true;
            }
            if l.state == LinkState::Delivering {
                l.retiring = true;
                true
            } else {
                drop_now.push(l.parent);
                false
            }
        });
        for &p in parents {
            self.add(p, now_us);
        }
        drop_now
    }

    /// A redirect frame from `parent` says to resume at `to`: the link moves there, due now.
    /// Returns the parent as it is known from now on (`None` if `parent` is not in the set).
    pub fn redirect(
        &mut self,
        parent: ParentAddr,
        to: std::net::SocketAddr,
        now_us: u64,
    ) -> Option<ParentAddr> {
        let moved = ParentAddr {
            id: parent.id,
            addr: to,
        };
        if self.links.iter().any(|l| l.parent == moved) {
            // Already a parent there: this link goes.
            self.links.retain(|l| l.parent != parent);
            return Some(moved);
        }
        let l = self.link(parent)?;
        l.parent = moved;
        l.state = LinkState::Waiting { retry_at: now_us };
        Some(moved)
    }

    /// Whether `parent`'s frame that lies ahead of the next sequence may be published (a jump):
    /// not while another parent delivered in order within [`IN_ORDER_US`].
    pub fn may_jump(&self, parent: ParentAddr, now_us: u64) -> bool {
        !self.links.iter().any(|l| {
            l.parent != parent
                && l.state == LinkState::Delivering
                && l.in_order_us
                    .is_some_and(|t| now_us.saturating_sub(t) < IN_ORDER_US)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(id: u32) -> ParentAddr {
        ParentAddr {
            id,
            addr: format!("127.0.0.1:{}", 9000 + id).parse().unwrap(),
        }
    }

    #[test]
    fn every_parent_is_due_at_once_and_once() {
        let mut s = ParentSet::new(&[p(1), p(2)], 10);
        assert_eq!(s.due(9), vec![]);
        assert_eq!(s.due(10), vec![p(1), p(2)]);
        assert_eq!(s.due(11), vec![]);
        assert_eq!(s.state(p(1)), Some(LinkState::Connecting));
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_lost_parent_is_retried_with_capped_exponential_backoff_reset_by_delivery() {
        let mut s = ParentSet::new(&[p(1)], 0);
        s.due(0);
        let mut waits = Vec::new();
        let mut now = 0;
        let mut firsts = Vec::new();
        for _ in 0..8 {
            let Lost::RetryAt { at, first } = s.lost(p(1), now) else {
                panic!("retried");
            };
            firsts.push(first);
            waits.push(at - now);
            assert_eq!(s.due(at - 1), vec![]);
            assert_eq!(s.due(at), vec![p(1)]);
            now = at;
        }
        assert_eq!(
            waits,
            [
                100_000, 200_000, 400_000, 800_000, 1_600_000, 2_000_000, 2_000_000, 2_000_000
            ]
        );
        assert_eq!(
            firsts,
            [true, false, false, false, false, false, false, false]
        );
        s.delivered(p(1), true, now);
        assert_eq!(
            s.lost(p(1), now),
            Lost::RetryAt {
                at: now + BACKOFF_MIN_US,
                first: true
            }
        );
    }

    #[test]
    fn switch_keeps_the_old_parent_until_a_new_one_delivers_in_order() {
        let mut s = ParentSet::new(&[p(1)], 0);
        s.due(0);
        s.delivered(p(1), true, 1);
        assert!(
            s.switch(&[p(2)], 5).is_empty(),
            "the old one delivers: kept"
        );
        assert_eq!(s.due(5), vec![p(2)]);
        // A new parent that jumps ahead has not delivered in order: the old one stays.
        assert!(s.delivered(p(2), false, 6).is_empty());
        assert_eq!(s.state(p(1)), Some(LinkState::Delivering));
        assert_eq!(s.delivered(p(2), true, 7), vec![p(1)]);
        assert_eq!(s.parents().collect::<Vec<_>>(), vec![p(2)]);
    }

    #[test]
    fn an_old_parent_that_dies_during_a_switch_is_not_retried() {
        let mut s = ParentSet::new(&[p(1), p(3)], 0);
        s.due(0);
        s.delivered(p(1), true, 1);
        // p(3) is not delivering: dropped at once; p(1) waits for p(2).
        assert_eq!(s.switch(&[p(2)], 2), vec![p(3)]);
        assert_eq!(s.lost(p(1), 3), Lost::Dropped);
        assert_eq!(s.parents().collect::<Vec<_>>(), vec![p(2)]);
        assert!(!s.any_delivering());
    }

    #[test]
    fn a_parent_kept_across_a_switch_is_untouched() {
        let mut s = ParentSet::new(&[p(1), p(2)], 0);
        s.due(0);
        s.delivered(p(1), true, 1);
        assert!(s.switch(&[p(1), p(3)], 2).contains(&p(2)));
        assert_eq!(s.state(p(1)), Some(LinkState::Delivering));
        assert_eq!(s.due(2), vec![p(3)]);
        assert!(s.delivered(p(3), true, 3).is_empty());
    }

    #[test]
    fn a_jump_waits_while_another_parent_delivers_in_order() {
        let mut s = ParentSet::new(&[p(1), p(2)], 0);
        s.due(0);
        assert!(s.may_jump(p(2), 0), "nobody delivers yet");
        s.delivered(p(1), true, 10);
        assert!(!s.may_jump(p(2), 10 + IN_ORDER_US - 1));
        assert!(s.may_jump(p(2), 10 + IN_ORDER_US), "p(1) stalled");
        assert!(
            s.may_jump(p(1), 20),
            "its own delivery does not hold it back"
        );
        s.lost(p(1), 30);
        assert!(s.may_jump(p(2), 31), "p(1) is gone");
    }

    #[test]
    fn a_redirect_moves_the_link_and_makes_it_due() {
        let mut s = ParentSet::new(&[p(1)], 0);
        s.due(0);
        let to: std::net::SocketAddr = "127.0.0.1:7777".parse().unwrap();
        let moved = s.redirect(p(1), to, 50).unwrap();
        assert_eq!(moved.addr, to);
        assert_eq!(s.due(50), vec![moved]);
        assert_eq!(s.redirect(p(9), to, 50), None);
    }

    proptest! {
        /// Whatever happens to the links, a parent of the current order is never dropped for
        /// good: it is delivering, connecting, or due again within the back-off cap.
        #[test]
        fn a_standing_parent_is_always_retried(ops in proptest::collection::vec((0u8..4, 1u32..4), 1..60)) {
            let mut s = ParentSet::new(&[p(1), p(2), p(3)], 0);
            let mut now = 0u64;
            for (op, id) in ops {
                now += 50_000;
                match op {
                    0 => { s.due(now); }
                    1 => { s.lost(p(id), now); }
                    2 => if matches!(s.state(p(id)), Some(LinkState::Connecting | LinkState::Delivering)) {
                        s.delivered(p(id), true, now);
                    },
                    _ => { s.due(now); }
                }
                for id in 1..4 {
                    match s.state(p(id)) {
                        Some(LinkState::Waiting { retry_at }) => prop_assert!(retry_at <= now + BACKOFF_MAX_US),
                        Some(_) => {}
                        None => prop_assert!(false, "parent {} dropped", id),
                    }
                }
            }
        }
    }
}
