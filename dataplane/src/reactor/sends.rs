//! Fan-out's I/O: waking the cores with subscribers of a stream that has new frames, queueing
//! each idle subscriber's next send from its [`crate::sendplan::SendPlan`], held-back sends
//! (`--coalesce-ms`) and the flash crowd that holds them longer, their completions, and the lag
//! policy's timer checks.

use super::*;

impl Core {
    /// Tells every core with subscribers of `stream` that frames were published.
    pub(super) fn notify(&mut self, stream: &Arc<Stream>) {
        let mut others = self.fanout.published(stream);
        while others != 0 {
            let c = others.trailing_zeros() as usize;
            others &= others - 1;
            self.wake(c);
        }
    }

    pub(super) fn wake(&mut self, core: usize) {
        if self.shared.wake_pending[core].swap(true, Ordering::SeqCst) {
            return;
        }
        let fd = self.shared.ring_fds[core].load(Ordering::Acquire);
        if fd < 0 {
            return;
        }
        let e = opcode::MsgRingData::new(types::Fd(fd), self.id as i32, ud(K_WAKE, 0, 0), None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(ud(K_IGNORE, 0, 0));
        self.push(e);
    }

    pub(super) fn flush_dirty(&mut self) {
        self.fanout.begin_pass();
        while let Some(id) = self.fanout.next_dirty() {
            self.pump(id);
        }
    }

    /// Queues one send per idle local subscriber of the stream, then republishes this core's
    /// reclamation mark.
    pub(super) fn pump(&mut self, stream_id: u64) {
        let Some(subs) = self.fanout.take(stream_id) else {
            return;
        };
        let mut mark = CoreMark::none();
        let mut now = self.shared.now_us();
        for (i, &slot) in subs.iter().enumerate() {
            // The clock once per 64 subscribers, not per send: a pass over thousands of them
            // takes milliseconds, but one subscriber's decision needs no finer time than that.
            if i % 64 == 63 {
                now = self.shared.now_us();
            }
            let c = &self.conns[slot as usize];
            let idle = !c.closing && matches!(&c.state, State::Viewer(v) if v.plan.is_idle());
            if idle {
                self.try_send_at(slot, now);
            }
            if let State::Viewer(v) = &self.conns[slot as usize].state {
                mark.include(v.plan.pin());
            }
        }
        self.fanout.restore(stream_id, subs, mark);
    }

    /// Publishes this core's reclamation mark for the stream again (a subscriber left).
    pub(super) fn republish_mark(&mut self, stream_id: u64) {
        let Some((_, subs)) = self.fanout.subscribers(stream_id) else {
            return;
        };
        let mut mark = CoreMark::none();
        for &slot in subs {
            if let State::Viewer(v) = &self.conns[slot as usize].state {
                mark.include(v.plan.pin());
            }
        }
        self.fanout.publish_mark(stream_id, mark);
    }

    /// At each tick: whether the core, serving `viewers`, holds its small sends for a flash
    /// crowd until the next tick ([`crate::join_rate`]): in a crowd, on a busy host. Then the
    /// joins' window moves on.
    pub(super) fn pace_crowd(&mut self, viewers: usize) {
        let busy_min = self.shared.cfg.crowd_busy_min;
        let crowd = self.joins.crowd(viewers);
        // The host is looked at only in a crowd: its first tick holds (no figure yet, counted
        // as busy; the joins are at their peak then), the next ones know.
        let busy = if crowd && busy_min > 0.0 {
            let now_us = self.shared.now_us();
            self.shared.host_busy.busy(now_us, crate::host_cpu::read)
        } else {
            None
        };
        let hold = holds_sends(crowd, busy, busy_min);
        if hold != self.crowd {
            info!(
                core = self.id,
                joins_last_second = self.joins.in_window(),
                viewers,
                host_busy_percent = busy.map(|b| (b * 100.0).round()),
                "{}",
                if hold {
                    "flash crowd on a busy host: small sends wait out their spacing (--coalesce-ms)"
                } else {
                    "flash crowd over or host not busy: sends of --coalesce-bytes go at once again"
                }
            );
        }
        self.crowd = hold;
        if hold {
            self.m().flash_crowd_ticks.fetch_add(1, Ordering::Relaxed);
        }
        self.joins.tick();
    }

    /// Starts the next send of an idle viewer, if there is anything to send.
    pub(super) fn try_send(&mut self, slot: u32) {
        self.try_send_at(slot, self.shared.now_us());
    }

    /// [`Core::try_send`] at `now_us` (the core's clock, read by the caller).
    fn try_send_at(&mut self, slot: u32, now_us: u64) {
        let shared = self.shared;
        let core = self.id;
        let pace = Pace {
            cfg: &shared.cfg,
            viewers: shared.placed[core]
                .load(Ordering::Relaxed)
                .saturating_sub(self.stuck_viewers),
            now_us,
            crowd: self.crowd,
        };
        let c = &mut self.conns[slot as usize];
        if c.closing {
            return;
        }
        let fd = c.fd;
        let generation = c.generation;
        let State::Viewer(v) = &mut c.state else {
            return;
        };
        if !v.plan.is_idle() {
            return;
        }
        let m = &shared.metrics[core];
        let e = match v
            .plan
            .next(&v.stream, pace, shared.pool.block_size() as u32)
        {
            Next::Prefix(bytes) => {
                opcode::Send::new(types::Fd(fd), bytes.as_ptr(), bytes.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Next::Van { batch, .. } => {
                let vm = v.van.as_deref_mut().expect("a VAN viewer has its msghdr");
                for (i, p) in batch.pieces.iter().enumerate() {
                    vm.iov[i] = match *p {
                        VanPiece::Header { index, skip } => libc::iovec {
                            // sendmsg only reads what the iovecs point at.
                            iov_base: batch.headers[index][skip as usize..]
                                .as_ptr()
                                .cast_mut()
                                .cast(),
                            iov_len: HEADER_LEN - skip as usize,
                        },
                        VanPiece::Payload { block, offset, len } => libc::iovec {
                            // SAFETY: inside the block; the block is pinned by the send in flight.
                            iov_base: unsafe { shared.pool.block_ptr(block).add(offset as usize) }
                                .cast(),
                            iov_len: len as usize,
                        },
                    };
                }
                vm.msg.msg_iov = vm.iov.as_mut_ptr();
                vm.msg.msg_iovlen = batch.pieces.len() as _;
                m.add(&m.sends_plain, 1);
                opcode::SendMsg::new(types::Fd(fd), &vm.msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
            Next::Plain(r) => {
                // SAFETY: the range lies inside the block, which the send in flight pins.
                let ptr = unsafe { shared.pool.block_ptr(r.block).add(r.offset as usize) };
                if v.zc && r.len >= shared.cfg.zerocopy_min {
                    m.add(&m.sends_zc, 1);
                    let zc_flags = if shared.cfg.zerocopy == ZeroCopy::Auto {
                        SEND_ZC_REPORT_USAGE
                    } else {
                        0
                    };
                    opcode::SendZc::new(types::Fd(fd), ptr, r.len)
                        .buf_index(Some(r.block as u16))
                        .flags(libc::MSG_NOSIGNAL)
                        .zc_flags(zc_flags)
                        .build()
                } else {
                    m.add(&m.sends_plain, 1);
                    // IORING_OP_SEND rather than WriteFixed: after a short write, a write is finished
                    // by a blocking io-wq worker that AsyncCancel cannot stop, so a stalled viewer
                    // could never be skipped; a send waits by poll and stays cancellable. A copying
                    // send gains nothing from a registered buffer (the pages are not pinned).
                    opcode::Send::new(types::Fd(fd), ptr, r.len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                }
            }
            Next::HoldBack { due } => {
                let id = v.stream.id;
                return self.hold_back(id, due, pace.now_us);
            }
            Next::Idle => return,
            Next::End { seq } => {
                v.plan.send_end(seq, wall_us(), b"stream ended");
                return self.try_send(slot);
            }
            Next::Close => return self.close(slot),
            Next::SkipToLive => return self.skip_to_live(slot),
            Next::Disconnect => return self.drop_van(slot, "fell out of the window"),
        };
        self.submit(slot, e.user_data(ud(K_SEND, slot, generation)));
    }

    /// A viewer of `stream_id` holds back a small send until `due`: the stream is pumped
    /// again when the core's coalescing timer fires (one timer; a viewer not due by then
    /// re-arms it).
    pub(super) fn hold_back(&mut self, stream_id: u64, due: u64, now: u64) {
        self.fanout.hold_back(stream_id);
        if self.coalesce_armed {
            return;
        }
        self.coalesce_armed = true;
        let wait_ns = (due.saturating_sub(now).max(50) * 1000) as u32;
        *self.coalesce_timespec = types::Timespec::new().nsec(wait_ns);
        self.push(
            opcode::Timeout::new(&*self.coalesce_timespec as *const _)
                .build()
                .user_data(ud(K_COALESCE, 0, 0)),
        );
    }

    pub(super) fn skip_to_live(&mut self, slot: u32) {
        let core = self.id;
        let burst = self.shared.cfg.burst_bytes;
        let State::Viewer(v) = &mut self.conns[slot as usize].state else {
            return;
        };
        let to = v.plan.skip_to_live(&v.stream, core, burst);
        debug!(core, stream = %v.stream.name, to, "lagging viewer skipped to the live edge");
        self.m().add(&self.m().viewers_skipped, 1);
        self.try_send(slot);
    }

    pub(super) fn drop_van(&mut self, slot: u32, why: &str) {
        let core = self.id;
        let State::Viewer(v) = &mut self.conns[slot as usize].state else {
            return;
        };
        let at = v.plan.cursor().seq;
        info!(core, stream = %v.stream.name, at, "VAN viewer disconnected: {why}");
        let m = &self.shared.metrics[core];
        m.add(&m.viewers_dropped, 1);
        if v.plan.is_idle() {
            v.plan.send_end(at, wall_us(), b"lagged out of the window");
            self.try_send(slot);
        } else {
            // Its socket is stuck: nothing more can be written to it.
            self.close(slot);
        }
    }

    pub(super) fn on_send(&mut self, slot: u32, res: i32, flags: u32) {
        let core = self.id;
        let zc_mode = self.shared.cfg.zerocopy;
        let c = &mut self.conns[slot as usize];
        // Reply (error answers, source 100/200).
        if let State::Reply { out, sent, then } = &mut c.state {
            if c.closing {
                return self.maybe_release(slot);
            }
            if res <= 0 {
                return self.close(slot);
            }
            *sent += res as usize;
            if *sent < out.len() {
                return self.send_reply(slot);
            }
            match then.take() {
                Some(sc) => {
                    c.state = State::Source(sc);
                    self.source_read(slot);
                }
                None => self.close(slot),
            }
            return;
        }
        let State::Viewer(v) = &mut c.state else {
            return self.maybe_release(slot);
        };
        let res = if cqueue::notif(flags) {
            // send_zc notification: the buffer is free now.
            if res & NOTIF_USAGE_ZC_COPIED != 0 && zc_mode == ZeroCopy::Auto && v.zc {
                v.zc = false;
                let m = &self.shared.metrics[core];
                m.add(&m.zc_fallbacks, 1);
                debug!(
                    core,
                    "kernel copied a send_zc: this socket uses plain send from now on"
                );
            }
            v.plan.zc_result().unwrap_or(-libc::EIO)
        } else if cqueue::more(flags) {
            // send_zc result; the notification follows.
            return v.plan.zc_sent(res);
        } else {
            res
        };
        // The send's final completion ends it, on every path, closing or not.
        let after = v.plan.complete(res, &v.stream.window);
        if c.closing {
            return self.maybe_release(slot);
        }
        if res >= 0 {
            let m = &self.shared.metrics[core];
            m.add(&m.bytes_out, res as u64);
        }
        match after {
            AfterSend::Next => self.try_send(slot),
            AfterSend::Close => {
                if res < 0 {
                    debug!(
                        core,
                        "viewer send failed: {}",
                        io::Error::from_raw_os_error(-res)
                    );
                }
                self.close(slot)
            }
            AfterSend::SkipToLive => self.skip_to_live(slot),
            AfterSend::Disconnect => self.drop_van(slot, "fell out of the window"),
        }
    }

    pub(super) fn remove_viewer(&mut self, v: &Viewer) {
        self.shared.placed[self.id].fetch_sub(1, Ordering::Relaxed);
        debug_assert!(v.plan.is_idle(), "released with a send in flight");
        if v.plan.is_van() {
            v.stream.van_viewers.fetch_sub(1, Ordering::Relaxed);
            self.m().van_viewers.fetch_sub(1, Ordering::Relaxed);
        } else {
            v.stream.viewers.fetch_sub(1, Ordering::Relaxed);
            self.m().viewers.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.event(left(&v.stream.name, v.child));
        let id = v.stream.id;
        if let Left::Remaining { moved } = self.fanout.leave(id, v.sub_index) {
            if let Some(moved) = moved
                && let State::Viewer(mv) = &mut self.conns[moved as usize].state
            {
                mv.sub_index = v.sub_index;
            }
            self.republish_mark(id);
        }
    }

    pub(super) fn check_lag(&mut self, slot: u32, first: u64, now: u64, timeout: u64) {
        let c = &self.conns[slot as usize];
        if c.closing {
            return;
        }
        let stopping = self.stopping.is_some();
        let generation = c.generation;
        let State::Viewer(v) = &mut self.conns[slot as usize].state else {
            return;
        };
        let stream = &v.stream;
        match v
            .plan
            .stalled(first, now, timeout, self.shared.cfg.window_us, || {
                !stream.is_ended() && !stopping
            }) {
            Stall::Keep => {}
            Stall::Drop => {
                info!(core = self.id, stream = %v.stream.name, "stalled viewer dropped: its zero-copy send cannot be taken back");
                let m = &self.shared.metrics[self.id];
                m.add(&m.viewers_dropped, 1);
                self.close(slot);
            }
            Stall::Cancel => {
                // Cancel the stuck send; the completion then moves the viewer to the live edge.
                debug!(core = self.id, stream = %v.stream.name, at = v.plan.cursor().seq, "send pending too long: cancelling it to skip the viewer");
                self.push(
                    opcode::AsyncCancel::new(ud(K_SEND, slot, generation))
                        .build()
                        .user_data(ud(K_IGNORE, 0, 0)),
                );
            }
            Stall::Close => self.close(slot),
            Stall::GiveUp => {
                info!(core = self.id, stream = %v.stream.name, "viewer took nothing for --window-seconds: disconnected");
                let m = &self.shared.metrics[self.id];
                m.add(&m.viewers_dropped, 1);
                self.close(slot);
            }
            Stall::Disconnect => self.drop_van(slot, "send pending too long"),
        }
    }
}
