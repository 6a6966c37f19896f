//! A point-to-point link between two network namespaces carried by the test process, with a
//! delay and a loss rate it can change while packets flow: what `tc netem` does, for a kernel
//! built without `sch_netem` (`crate::netns::Lab::impair` uses netem where it exists).
//!
//! Each end is a TUN device in its namespace (IP packets, no link layer). One thread per
//! direction reads a packet from one end, drops it with the loss probability, and hands it to a
//! second thread that writes it to the other end once the delay has passed; the delay is the
//! same for every packet, so the order is kept, as on a wire.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What the wire does to each packet now.
#[derive(Default)]
struct Impairment {
    delay_us: AtomicU64,
    /// Dropped packets per million.
    loss_ppm: AtomicU64,
}

/// The running wire; its threads stop and its devices go when it is dropped.
pub struct Wire {
    /// What is done to the packets from end a to end b, and from b to a.
    a_to_b: Arc<Impairment>,
    b_to_a: Arc<Impairment>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Wire {
    /// Creates TUN device `dev_a` in the namespace at `ns_a` and `dev_b` in the one at `ns_b`
    /// (paths like `/run/netns/NAME`) and carries packets between them; the caller addresses
    /// and raises the devices. The calling thread's namespace is left as it was.
    pub fn new(ns_a: &str, dev_a: &str, ns_b: &str, dev_b: &str) -> Result<Self> {
        let (a, b) = std::thread::scope(|s| {
            // A helper thread enters each namespace: a TUN device is created in its opener's.
            s.spawn(|| -> Result<(File, File)> {
                Ok((open_tun(ns_a, dev_a)?, open_tun(ns_b, dev_b)?))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the TUN opening thread panicked"))?
        })?;
        let (a_to_b, b_to_a) = (Arc::<Impairment>::default(), Arc::<Impairment>::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (a_in, b_in) = (a.try_clone()?, b.try_clone()?);
        let mut threads = Vec::new();
        for (from, to, impairment, name) in [
            (a_in, b, a_to_b.clone(), "a-to-b"),
            (b_in, a, b_to_a.clone(), "b-to-a"),
        ] {
            let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
            let stop_reading = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wire-{name}-in"))
                    .spawn(move || carry_in(from, &impairment, &stop_reading, &tx))?,
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wire-{name}-out"))
                    .spawn(move || carry_out(to, &rx))?,
            );
        }
        Ok(Wire {
            a_to_b,
            b_to_a,
            stop,
            threads,
        })
    }

    /// From now on, every packet from end a (`from_a`) or from end b waits `delay`, and a
    /// fraction `loss` (0..=1) of them is dropped.
    pub fn impair(&self, from_a: bool, delay: Duration, loss: f64) {
        let impairment = if from_a { &self.a_to_b } else { &self.b_to_a };
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        impairment.delay_us.store(us, Ordering::Relaxed);
        let ppm = (loss.clamp(0.0, 1.0) * 1e6).round() as u64;
        impairment.loss_ppm.store(ppm, Ordering::Relaxed);
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Opens a new TUN device `dev` in the network namespace at `ns` (from this thread, which
/// stays in that namespace: call it from a thread of its own).
fn open_tun(ns: &str, dev: &str) -> Result<File> {
    let target = File::open(ns).with_context(|| format!("open {ns}"))?;
    // SAFETY: setns(2) with a descriptor we own; it changes only this thread's namespace.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {ns}"));
    }
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("open /dev/net/tun")?;
    if dev.len() >= libc::IFNAMSIZ {
        bail!("device name {dev} too long");
    }
    // SAFETY: an all-zero ifreq is valid (a name of NULs, flags 0).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in req.ifr_name.iter_mut().zip(dev.bytes()) {
        *slot = byte as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we own, on the descriptor we own.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("TUNSETIFF {dev} in {ns}"));
    }
    Ok(tun)
}

/// Reads packets from `from` until `stop`, and queues the ones not lost with their due time.
fn carry_in(
    mut from: File,
    impairment: &Impairment,
    stop: &AtomicBool,
    to: &mpsc::Sender<(Instant, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 65536];
    // xorshift64: enough randomness to pick which packets a loss rate drops.
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    while !stop.load(Ordering::Relaxed) {
        let mut fd = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd we own; the timeout lets the thread see `stop`.
        let ready = unsafe { libc::poll(&mut fd, 1, 100) };
        if ready <= 0 {
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if rng % 1_000_000 < impairment.loss_ppm.load(Ordering::Relaxed) {
            continue;
        }
        let due =
            Instant::now() + Duration::from_micros(impairment.delay_us.load(Ordering::Relaxed));
        if to.send((due, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// Writes each queued packet to `to` once it is due; ends when the reading side does.
fn carry_out(mut to: File, queue: &mpsc::Receiver<(Instant, Vec<u8>)>) {
    while let Ok((due, packet)) = queue.recv() {
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        // A device that is down refuses packets: dropped, as a cut wire does.
        let _ = to.write(&packet);
    }
}
