//! Network namespaces for the fault tests (issue 10, item 7): a [`Lab`] builds its own small
//! network out of namespaces and veth pairs, on a private subnet that exists only inside them
//! (the host's interfaces are never touched), and removes it again when dropped.
//!
//! - The hub namespace holds the PNC and the test itself: [`Lab::new`] moves the calling thread
//!   into it, so the viewers and the source the test starts from then on (threads of the test)
//!   connect from there, and processes it spawns start there.
//! - Every relay runs in a namespace of its own (`ip netns exec NS dataplane …`, so its PID is
//!   the relay's), reachable at `10.77.0.ID`, an address on its loopback.
//! - Each relay has an uplink to the hub (the PNC, viewers, the source) and one point-to-point
//!   link to every relay of the tier above and below it (the origin is above tier 1). A relay
//!   reaches another relay only over their own link: cutting it ([`Lab::cut`]) cuts that parent
//!   link and nothing else, and delay and loss on it ([`Lab::impair`]) slow only that link.
//! - A link is a veth pair, impaired with `tc netem`; or, where the kernel has no netem
//!   ([`netem_available`]), a [`Wire`] the test process carries, which delays and drops itself.
//! - New connections over a link can be refused while the open ones carry on (nftables,
//!   [`Lab::refuse_new_connections`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::have_tool;
use crate::network::{Hosts, ORIGIN};
use crate::wire::Wire;

/// Names of this crate's namespaces start so; the owning test process's PID follows.
const PREFIX: &str = "vane2e-";

/// The hub's address: the PNC listens there.
pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);

/// Relay `id`'s address, on the loopback of its namespace.
pub fn relay_ip(id: u32) -> Ipv4Addr {
    let last = u8::try_from(id)
        .ok()
        .filter(|&n| (1..=253).contains(&n))
        .unwrap_or_else(|| panic!("relay id {id} does not fit 10.77.0.1-253"));
    Ipv4Addr::new(10, 77, 0, last)
}

/// The namespaces of one test, deleted (and the test thread moved back where it was) on drop.
pub struct Lab {
    /// `vane2e-PID-TAG-`: every namespace of this lab is named with it.
    base: String,
    /// Every namespace created so far, in order.
    created: Vec<String>,
    /// The relays, by id.
    relays: Vec<u32>,
    /// The links carried by the test process, by (parent, child).
    wires: BTreeMap<(u32, u32), Wire>,
    /// The calling thread's network namespace before it entered the hub.
    home: Option<File>,
}

impl Lab {
    /// Builds the hub and one namespace per relay of `tiers` plus the origin, links them, and
    /// moves the calling thread into the hub. Fails with the reason if this host cannot (not
    /// root, no `ip`), leaving nothing behind.
    pub fn new(tag: &str, tiers: &[Vec<u32>]) -> Result<Self> {
        Self::with_wires(tag, tiers, &[])
    }

    /// Like [`Lab::new`], with the links between the (parent, child) pairs of `wired` carried
    /// by [`Wire`]s instead of veth pairs.
    pub fn with_wires(tag: &str, tiers: &[Vec<u32>], wired: &[(u32, u32)]) -> Result<Self> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("creating network namespaces needs root (run the test as root, as CI does)");
        }
        if !have_tool("ip") {
            bail!("`ip` (iproute2) is not installed");
        }
        remove_stale();
        let mut lab = Lab {
            base: format!("{PREFIX}{}-{tag}-", std::process::id()),
            created: Vec::new(),
            relays: std::iter::once(ORIGIN)
                .chain(tiers.iter().flatten().copied())
                .collect(),
            wires: BTreeMap::new(),
            home: None,
        };
        let hub = lab.hub();
        lab.add_namespace(&hub, HUB_IP)?;
        for id in lab.relays.clone() {
            let ns = lab.ns(id);
            lab.add_namespace(&ns, relay_ip(id))?;
            // The uplink: `rID` in the hub, `uplink` in the relay's namespace.
            let hub_end = format!("r{id}");
            ip(&["-n", &hub, "link", "add", &hub_end, "type", "veth"]
                .into_iter()
                .chain(["peer", "name", "uplink", "netns", &ns])
                .collect::<Vec<_>>())?;
            up(&hub, &hub_end)?;
            up(&ns, "uplink")?;
            route(&hub, relay_ip(id), &hub_end)?;
            route(&ns, HUB_IP, "uplink")?;
        }
        let mut above = vec![ORIGIN];
        for tier in tiers {
            for &child in tier {
                for &parent in &above {
                    if wired.contains(&(parent, child)) {
                        lab.wire(parent, child)?;
                    } else {
                        lab.link(parent, child)?;
                    }
                }
            }
            above = tier.clone();
        }
        lab.enter_hub()?;
        Ok(lab)
    }

    fn hub(&self) -> String {
        format!("{}hub", self.base)
    }

    /// The namespace relay `id` runs in.
    pub fn ns(&self, id: u32) -> String {
        format!("{}p{id}", self.base)
    }

    fn add_namespace(&mut self, name: &str, address: Ipv4Addr) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_string());
        ip(&["-n", name, "link", "set", "dev", "lo", "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "lo",
        ])
    }

    /// The link between relays `a` and `b`: `pB` in `a`'s namespace, `pA` in `b`'s.
    fn link(&self, a: u32, b: u32) -> Result<()> {
        let (ns_a, ns_b) = (self.ns(a), self.ns(b));
        let (end_a, end_b) = (format!("p{b}"), format!("p{a}"));
        ip(&[
            "-n", &ns_a, "link", "add", &end_a, "type", "veth", "peer", "name", &end_b, "netns",
            &ns_b,
        ])?;
        up(&ns_a, &end_a)?;
        up(&ns_b, &end_b)?;
        route(&ns_a, relay_ip(b), &end_a)?;
        route(&ns_b, relay_ip(a), &end_b)
    }

    /// Like [`Lab::link`], carried by a [`Wire`] between TUN devices of the same names.
    fn wire(&mut self, a: u32, b: u32) -> Result<()> {
        let (ns_a, ns_b) = (self.ns(a), self.ns(b));
        let (end_a, end_b) = (format!("p{b}"), format!("p{a}"));
        let wire = Wire::new(
            &format!("/run/netns/{ns_a}"),
            &end_a,
            &format!("/run/netns/{ns_b}"),
            &end_b,
        )?;
        self.wires.insert((a, b), wire);
        up(&ns_a, &end_a)?;
        up(&ns_b, &end_b)?;
        route(&ns_a, relay_ip(b), &end_a)?;
        route(&ns_b, relay_ip(a), &end_b)
    }

    fn enter_hub(&mut self) -> Result<()> {
        self.home = Some(File::open("/proc/thread-self/ns/net").context("this thread's netns")?);
        enter(&format!("/run/netns/{}", self.hub()))
    }

    /// Where the PNC and each relay listen, and `ip netns exec` for each relay.
    pub fn hosts(&self) -> Hosts {
        Hosts {
            pnc: IpAddr::V4(HUB_IP),
            relays: self
                .relays
                .iter()
                .map(|&id| {
                    let wrapper = ["ip", "netns", "exec", &self.ns(id)].map(String::from);
                    (id, (IpAddr::V4(relay_ip(id)), wrapper.to_vec()))
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// Cuts the link between `child` and `parent` (`ip link set … down` on the child's end:
    /// the child's route to the parent goes with it, the parent's end loses its carrier).
    pub fn cut(&self, child: u32, parent: u32) -> Result<()> {
        ip(&[
            "-n",
            &self.ns(child),
            "link",
            "set",
            "dev",
            &format!("p{parent}"),
            "down",
        ])
    }

    /// Refuses every new TCP connection `from` opens to `to` (an nftables rule in `from`'s
    /// namespace answers its SYNs with a reset) while the connections already open carry on:
    /// the monitoring's probes of `to` fail at once ([0053]) and its pull from `to` keeps
    /// delivering, a path that is half broken.
    /// [`Lab::allow_new_connections`] lifts it.
    pub fn refuse_new_connections(&self, from: u32, to: u32) -> Result<()> {
        let ns = self.ns(from);
        let (table, chain) = ("vane2e", "refused");
        // `add` of an existing table or chain is no error: one rule per refused peer.
        nft(&ns, &format!("add table inet {table}"))?;
        nft(
            &ns,
            &format!(
                "add chain inet {table} {chain} {{ type filter hook output priority 0; policy accept; }}"
            ),
        )?;
        nft(
            &ns,
            &format!(
                "add rule inet {table} {chain} ip daddr {} tcp flags & (syn|ack) == syn reject with tcp reset",
                relay_ip(to)
            ),
        )
    }

    /// Lifts every [`Lab::refuse_new_connections`] of `from`.
    pub fn allow_new_connections(&self, from: u32) -> Result<()> {
        let ns = self.ns(from);
        // Adding the table first makes the delete succeed whether or not it existed.
        nft(&ns, "add table inet vane2e")?;
        nft(&ns, "delete table inet vane2e")
    }

    /// From now on, what `from` sends `to` over their link waits `delay` and a fraction `loss`
    /// (0..=1) of it is dropped: `tc qdisc add … root netem delay … loss …` on `from`'s end of a
    /// veth link, the wire's own delay and loss on a wired one.
    pub fn impair(&self, from: u32, to: u32, delay: Duration, loss: f64) -> Result<()> {
        if let Some(wire) = self.wires.get(&(from, to)) {
            wire.impair(true, delay, loss);
            return Ok(());
        }
        if let Some(wire) = self.wires.get(&(to, from)) {
            wire.impair(false, delay, loss);
            return Ok(());
        }
        let ns = self.ns(from);
        let dev = format!("p{to}");
        let (delay, loss) = (
            format!("{}us", delay.as_micros()),
            format!("{}%", loss * 100.0),
        );
        let args = ["netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev]
            .into_iter()
            .chain(["root", "netem", "delay", &delay, "loss", &loss])
            .collect::<Vec<_>>();
        ip(&args)
    }
}

/// Whether `tc netem` can be used here: the kernel needs `sch_netem` (CONFIG_NET_SCH_NETEM),
/// which a stripped-down kernel may lack. Tried in a namespace made for it; `Err` says why not.
pub fn netem_available() -> Result<(), String> {
    if !have_tool("tc") {
        return Err("`tc` (iproute2) is not installed".into());
    }
    let ns = format!("{PREFIX}{}-netem-probe", std::process::id());
    ip(&["netns", "add", &ns]).map_err(|e| format!("{e:#}"))?;
    let probe = ["netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo"]
        .into_iter()
        .chain(["root", "netem", "delay", "1ms"])
        .collect::<Vec<_>>();
    let tried = ip(&probe).map_err(|e| format!("the kernel has no netem qdisc (sch_netem): {e:#}"));
    let _ = ip(&["netns", "del", &ns]);
    tried
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The wires' threads first: they hold the TUN devices of the namespaces below.
        self.wires.clear();
        if let Some(home) = self.home.take() {
            // SAFETY: setns(2) with a descriptor of a network namespace we opened.
            if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                eprintln!(
                    "netns: could not go back to the test's namespace: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        // A namespace goes once its last process exits; its veth ends go with it.
        for name in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("netns: {e:#}");
            }
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) -> Result<()> {
    let ns = File::open(path).with_context(|| format!("open {path}"))?;
    // SAFETY: setns(2) with a descriptor we own; it changes only this thread's namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {path}"));
    }
    Ok(())
}

fn up(ns: &str, dev: &str) -> Result<()> {
    ip(&["-n", ns, "link", "set", "dev", dev, "up"])
}

fn route(ns: &str, to: Ipv4Addr, dev: &str) -> Result<()> {
    ip(&["-n", ns, "route", "add", &format!("{to}/32"), "dev", dev])
}

/// Runs the nftables command `rule` in namespace `ns`.
fn nft(ns: &str, rule: &str) -> Result<()> {
    if !have_tool("nft") {
        bail!("`nft` (nftables) is not installed");
    }
    let words: Vec<&str> = rule.split_whitespace().collect();
    let args = ["netns", "exec", ns, "nft"]
        .into_iter()
        .chain(words)
        .collect::<Vec<_>>();
    ip(&args)
}

/// Runs `ip ARGS`; `Err` with its stderr if it fails.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Deletes the namespaces of test processes that no longer run (killed before their `Drop`).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
