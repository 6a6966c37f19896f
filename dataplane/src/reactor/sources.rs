//! Ingest's I/O: a source's socket is polled until readable, then read straight into the
//! stream's current pool block (`ReadFixed`); [`crate::ingest`] decides what each read becomes.
//! A source that leaves puts its stream in grace.

use super::*;

impl Core {
    pub(super) fn source_mut(&mut self, slot: u32) -> Option<&mut Ingest> {
        match &mut self.conns[slot as usize].state {
            State::Source(src) => Some(src),
            _ => None,
        }
    }

    /// Queues the next read of a source into its block's free tail; body bytes that came with
    /// the head are published first.
    pub(super) fn source_read(&mut self, slot: u32) {
        let shared = self.shared;
        loop {
            let c = &mut self.conns[slot as usize];
            let (fd, generation) = (c.fd, c.generation);
            let State::Source(src) = &mut c.state else {
                return;
            };
            match src.next_read(&shared.pool) {
                NextRead::Ended => return self.close(slot),
                NextRead::Buffered(n) => {
                    if !self.ingest(slot, n) {
                        return;
                    }
                }
                NextRead::Paused { first } => {
                    if first {
                        warn!(core = self.id, stream = %src.stream().name, "block pool exhausted: ingest paused until blocks are freed");
                    }
                    self.m().add(&self.m().ingest_paused, 1);
                    return;
                }
                NextRead::AwaitBytes => {
                    let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                        .build()
                        .user_data(ud(K_READABLE, slot, generation));
                    return self.submit(slot, e);
                }
                NextRead::Read { block, offset, len } => {
                    // SAFETY: in bounds of the block (offset + len <= block size).
                    let ptr = unsafe { shared.pool.block_ptr(block).add(offset) };
                    let e = opcode::ReadFixed::new(types::Fd(fd), ptr, len as u32, block as u16)
                        .offset(u64::MAX)
                        .build()
                        .user_data(ud(K_READ, slot, generation));
                    return self.submit(slot, e);
                }
            }
        }
    }

    /// The source's socket is readable: take a block and read.
    pub(super) fn on_readable(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            self.maybe_release(slot);
            return;
        }
        if res < 0 {
            if let Some(src) = self.source_mut(slot) {
                let name = src.stream().name.clone();
                info!(core = self.id, stream = %name, "source poll failed: {}", io::Error::from_raw_os_error(-res));
            }
            self.close(slot);
            return;
        }
        if let Some(src) = self.source_mut(slot) {
            src.bytes_arrived();
            self.source_read(slot);
        }
    }

    pub(super) fn on_read(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            self.maybe_release(slot);
            return;
        }
        if res <= 0 {
            let core = self.id;
            if let Some(src) = self.source_mut(slot) {
                let name = &src.stream().name;
                if res < 0 {
                    info!(core, stream = %name, "source read failed: {}", io::Error::from_raw_os_error(-res));
                } else {
                    info!(core, stream = %name, "source closed its connection");
                }
            }
            self.close(slot);
            return;
        }
        if self.ingest(slot, res as usize) && !self.move_source(slot) {
            self.source_read(slot);
        }
    }

    /// Hands the source to another reactor if it should be read there now
    /// ([`Core::source_reader`]). Only between two reads, when nothing is in flight on it, so
    /// its state moves whole and no byte is read twice or lost. Returns whether it left.
    fn move_source(&mut self, slot: u32) -> bool {
        if self.stopping.is_some() {
            return false;
        }
        let target = self.source_reader();
        if target == self.id {
            return false;
        }
        let c = &mut self.conns[slot as usize];
        let ingest = match std::mem::replace(&mut c.state, State::Free) {
            State::Source(ingest) => ingest,
            other => {
                c.state = other;
                return false;
            }
        };
        let viewers_here = self.shared.placed[self.id].load(Ordering::Relaxed);
        info!(core = self.id, to = target, viewers_here, stream = %ingest.stream().name,
            "source moved to the reactor that reads it now (--ingest-thread)");
        self.sources.retain(|&s| s != slot);
        self.m().sources.fetch_sub(1, Ordering::Relaxed);
        self.m().add(&self.m().sources_moved, 1);
        let fd = self.give_up(slot);
        self.shared.handoffs[target].push(Handoff::Source {
            fd,
            ingest,
            reply: Vec::new(),
        });
        self.message_handoff(target);
        true
    }

    /// Hands the `n` bytes just placed at the source's tail to its [`Ingest`], counts what it
    /// published and wakes the cores that have subscribers. Returns false if the connection was
    /// closed.
    pub(super) fn ingest(&mut self, slot: u32, n: usize) -> bool {
        let shared = self.shared;
        let core = self.id;
        let State::Source(src) = &mut self.conns[slot as usize].state else {
            return false;
        };
        let fed = match src.feed(&shared.pool, n, wall_us()) {
            Ok(fed) => fed,
            Err(e) => {
                warn!(core, stream = %src.stream().name, "source sent bad chunked framing: {e}");
                self.close(slot);
                return false;
            }
        };
        let metrics = &shared.metrics[core];
        metrics.add(&metrics.bytes_in, fed.received as u64);
        if fed.sniffed_ts {
            info!(core, stream = %src.stream().name, "MPEG-TS detected from sync bytes: serving it as video/mp2t");
        }
        if fed.payload == 0 {
            return true;
        }
        metrics.add(&metrics.frames_published, fed.frames);
        if fed.new_block {
            metrics.add(&metrics.blocks_published, 1);
        }
        let stream = src.stream().clone();
        self.notify(&stream);
        true
    }

    pub(super) fn source_left(&mut self, slot: u32, src: Box<Ingest>) {
        self.sources.retain(|&s| s != slot);
        self.m().sources.fetch_sub(1, Ordering::Relaxed);
        let (stream, writer) = src.into_parts();
        if self.stopping.is_some() || stream.is_ended() {
            self.shared.streams.end_live(&stream);
            self.shared.event(LocalEvent::SourceEnded {
                stream: stream.name.clone(),
            });
            self.notify(&stream);
            self.draining.push((stream, writer));
            return;
        }
        let deadline = self.shared.now_us() + self.shared.cfg.grace_us;
        info!(core = self.id, stream = %stream.name, grace_s = self.shared.cfg.grace_us as f64 / 1e6, "source left: stream in grace");
        self.shared.streams.detach_source(&stream, writer, deadline);
        self.grace.push(stream);
    }
}
