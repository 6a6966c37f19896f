//! The front door's I/O: the multishot accept, reading a request head into its small buffer,
//! sending canned replies, and carrying out [`crate::frontdoor`]'s admission: a source starts
//! ingesting, a viewer is placed on the core that serves its stream (handed off through the
//! ring when that is another core), parked to wait for a standby's stream, or refused.

use super::*;

impl Core {
    pub(super) fn arm_accept(&mut self) {
        // The ingest thread has no listener: it is handed its sources.
        if self.listener < 0 {
            return;
        }
        self.accept_armed = true;
        self.push(
            opcode::AcceptMulti::new(types::Fd(self.listener))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(ud(K_ACCEPT, 0, 0)),
        );
    }

    pub(super) fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
            // After an error (EMFILE, ENFILE...) wait for the next tick rather than spin.
            if self.stopping.is_none() && res >= 0 {
                self.arm_accept();
            }
        }
        if res < 0 {
            if res != -libc::ECANCELED {
                warn!(
                    core = self.id,
                    "accept failed: {}",
                    io::Error::from_raw_os_error(-res)
                );
            }
            return;
        }
        let fd = res;
        if self.stopping.is_some() {
            // SAFETY: fd was just accepted and is owned by nobody else.
            unsafe { libc::close(fd) };
            return;
        }
        let n = self.shared.connections.fetch_add(1, Ordering::AcqRel);
        if n >= self.shared.max_connections {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            turn_away(fd);
            self.m().reject(Reject::TooManyConnections);
            warn!(
                core = self.id,
                "connection refused: over --max-connections ({})", self.shared.max_connections
            );
            return;
        }
        self.m().connections.fetch_add(1, Ordering::Relaxed);
        let slot = self.alloc_conn(
            fd,
            State::Head {
                buf: Vec::with_capacity(HEAD_BUF_START),
            },
        );
        let deadline = self.shared.now_us() + self.shared.cfg.header_timeout_us;
        let generation = self.conns[slot as usize].generation;
        self.head_deadlines.push_back((deadline, slot, generation));
        self.recv_head(slot);
    }

    pub(super) fn recv_head(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let State::Head { buf } = &mut c.state else {
            return;
        };
        if buf.capacity() == buf.len() {
            let want = (buf.capacity() * 2).min(http::MAX_HEAD);
            buf.reserve_exact(want - buf.len());
        }
        // SAFETY: writing into the spare capacity; the Vec is not touched until the completion.
        let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
        let len = (buf.capacity() - buf.len()) as u32;
        let e = opcode::Recv::new(types::Fd(c.fd), ptr, len)
            .build()
            .user_data(ud(K_RECV, slot, c.generation));
        self.submit(slot, e);
    }

    pub(super) fn on_recv(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            self.maybe_release(slot);
            return;
        }
        if res <= 0 {
            debug!(
                core = self.id,
                "connection closed before a whole request head"
            );
            self.close(slot);
            return;
        }
        let State::Head { buf } = &mut c.state else {
            return;
        };
        // SAFETY: the kernel wrote `res` bytes into the spare capacity.
        unsafe { buf.set_len(buf.len() + res as usize) };
        match http::parse_request(buf) {
            Ok(None) if buf.len() >= http::MAX_HEAD => {
                let refusal = frontdoor::refusal(&http::HttpError::HeadTooLarge, self.id);
                self.admitted(slot, refusal);
            }
            Ok(None) => self.recv_head(slot),
            Err(e) => self.admitted(slot, frontdoor::refusal(&e, self.id)),
            Ok(Some(req)) => {
                let State::Head { buf } =
                    std::mem::replace(&mut self.conns[slot as usize].state, State::Free)
                else {
                    unreachable!("checked above")
                };
                let leftover = buf
                    .get(req.head_len.min(buf.len())..)
                    .unwrap_or(&[])
                    .to_vec();
                self.route(slot, req, leftover);
            }
        }
    }

    pub(super) fn reply(&mut self, slot: u32, out: Vec<u8>, then: Option<Box<Ingest>>) {
        self.conns[slot as usize].state = State::Reply { out, sent: 0, then };
        self.send_reply(slot);
    }

    pub(super) fn send_reply(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let State::Reply { out, sent, .. } = &c.state else {
            return;
        };
        let ptr = out[*sent..].as_ptr();
        let len = (out.len() - *sent) as u32;
        let e = opcode::Send::new(types::Fd(c.fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(K_SEND, slot, c.generation));
        self.submit(slot, e);
    }

    /// Admits a parsed request at the front door.
    pub(super) fn route(&mut self, slot: u32, req: Request, leftover: Vec<u8>) {
        let shared = self.shared;
        let fd = self.conns[slot as usize].fd;
        let door = FrontDoor {
            streams: &shared.streams,
            creds: shared.creds.as_ref(),
            tokens: shared.tokens.as_ref(),
            admission: &shared.admission,
            core: self.id,
        };
        let admission = door.admit(req, leftover, || peer_is_loopback(fd));
        self.admitted(slot, admission);
    }

    /// Carries out what the front door decided.
    pub(super) fn admitted(&mut self, slot: u32, admission: Admission) {
        match admission {
            Admission::Refuse { why, reply } => {
                self.m().reject(why);
                self.reply(slot, reply, None);
            }
            Admission::Head { reply } | Admission::Redirect { reply } => {
                self.reply(slot, reply, None)
            }
            Admission::Source {
                ingest,
                reply,
                resumed,
            } => {
                if !resumed {
                    let stream = ingest.stream();
                    self.shared.event(LocalEvent::SourceStarted {
                        stream: stream.name.clone(),
                        content_type: stream.content_type(),
                    });
                }
                self.place_source(slot, ingest, reply);
            }
            Admission::Viewer { stream, van, child } => {
                // Told here, once, whichever core serves it.
                self.shared.event(joined(&stream.name, child));
                self.place_viewer(slot, stream, van, child)
            }
            Admission::Wait {
                stream,
                van,
                child,
                activated,
            } => {
                // [0054] its arrival is the standby's first sink: the agent orders the pull
                // (at once, or when the activation arrives: the agent counted the sink). Where
                // it resumes is noted first, for whichever core the order goes to.
                let now = self.shared.now_us();
                if let Some(Some(from)) = van {
                    self.shared
                        .waited_for
                        .note(&stream, from, now + STANDBY_WAIT_US);
                }
                self.shared.event(joined(&stream, child));
                let c = &mut self.conns[slot as usize];
                c.state = State::Waiting(Box::new(super::waiting::Waiting {
                    stream,
                    van,
                    child,
                    until_us: now + STANDBY_WAIT_US,
                    activation_until_us: if activated {
                        0
                    } else {
                        now + ACTIVATION_WAIT_US
                    },
                }));
                self.waiting.push((slot, c.generation));
            }
        }
    }

    /// The core a new viewer is served on.
    pub(super) fn viewer_core(&self) -> usize {
        let shared = self.shared;
        if shared.cfg.placement == Placement::Reuseport {
            return self.id;
        }
        frontdoor::least_loaded(
            self.id,
            shared.cfg.cores,
            |c| shared.placed[c].load(Ordering::Relaxed),
            // A core whose ring is gone (stopped) takes no one.
            |c| shared.ring_fds[c].load(Ordering::Acquire) >= 0,
        )
    }

    /// Serves a viewer here or hands it to the least-loaded core. A connection is moved at most
    /// once, before its first byte of response, and then lives on that core.
    pub(super) fn place_viewer(
        &mut self,
        slot: u32,
        s: Arc<Stream>,
        van: Option<Option<u64>>,
        child: Option<u32>,
    ) {
        let target = self.viewer_core();
        self.shared.placed[target].fetch_add(1, Ordering::Relaxed);
        if target == self.id {
            return self.start_viewer(slot, s, van, child);
        }
        let fd = self.give_up(slot);
        self.m().add(&self.m().viewers_handed_off, 1);
        self.shared.handoffs[target].push(Handoff::Viewer {
            fd,
            stream: s,
            van,
            child,
        });
        self.message_handoff(target);
    }

    /// Reads a source here, or hands it to the reactor that should read it
    /// ([`frontdoor::source_reader`]).
    pub(super) fn place_source(&mut self, slot: u32, ingest: Box<Ingest>, reply: Vec<u8>) {
        let target = self.source_reader();
        if target == self.id {
            return self.start_source(slot, ingest, reply);
        }
        let fd = self.give_up(slot);
        self.shared.handoffs[target].push(Handoff::Source { fd, ingest, reply });
        self.message_handoff(target);
    }

    /// The reactor that should read this one's sources now: the ingest thread or a fan-out
    /// core, by `--ingest-thread` and the viewers each core serves.
    pub(super) fn source_reader(&self) -> usize {
        let shared = self.shared;
        let cfg = &shared.cfg;
        frontdoor::source_reader(
            self.id,
            cfg.ingest_thread,
            cfg.cores,
            cfg.ingest_busy_viewers,
            |c| shared.placed[c].load(Ordering::Relaxed),
            |c| shared.ring_fds[c].load(Ordering::Acquire) >= 0,
        )
    }

    /// Sends a new source its reply, then reads it; a source moved from another reactor (no
    /// reply left to send) is read at once.
    fn start_source(&mut self, slot: u32, ingest: Box<Ingest>, reply: Vec<u8>) {
        self.m().sources.fetch_add(1, Ordering::Relaxed);
        self.sources.push(slot);
        if reply.is_empty() {
            self.conns[slot as usize].state = State::Source(ingest);
            return self.source_read(slot);
        }
        self.reply(slot, reply, Some(ingest));
    }

    /// Frees a connection's slot here and returns its socket, for another core: a parsed
    /// request's, or a source's between two reads.
    pub(super) fn give_up(&mut self, slot: u32) -> RawFd {
        let c = &mut self.conns[slot as usize];
        debug_assert_eq!(
            c.ops, 0,
            "a connection handed over has no operation in flight"
        );
        let fd = std::mem::replace(&mut c.fd, -1);
        c.state = State::Free;
        self.free.push(slot);
        self.m().connections.fetch_sub(1, Ordering::Relaxed);
        fd
    }

    /// Tells core `target` to take what was queued for it in `handoffs`.
    pub(super) fn message_handoff(&mut self, target: usize) {
        let ring = self.shared.ring_fds[target].load(Ordering::Acquire);
        // Generation 0: the message the target receives; 1: our own completion, posted only
        // if the message could not be delivered.
        let e = opcode::MsgRingData::new(types::Fd(ring), 0, ud(K_HANDOFF, target as u32, 0), None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(ud(K_HANDOFF, target as u32, 1));
        self.push(e);
    }

    /// Starts the viewers and sources other cores handed to this one; or, when this core's own
    /// message to `target` could not be delivered (its ring is gone: shutdown), ends what is
    /// queued there.
    pub(super) fn on_handoff(&mut self, target: usize, undelivered: bool) {
        let queue = if undelivered { target } else { self.id };
        while let Some(h) = self.shared.handoffs[queue].pop() {
            if undelivered || self.stopping.is_some() {
                self.end_handoff(h, queue);
                continue;
            }
            self.m().connections.fetch_add(1, Ordering::Relaxed);
            match h {
                Handoff::Viewer {
                    fd,
                    stream,
                    van,
                    child,
                } => {
                    let slot = self.alloc_conn(fd, State::Free);
                    self.start_viewer(slot, stream, van, child);
                }
                Handoff::Source { fd, ingest, reply } => {
                    let slot = self.alloc_conn(fd, State::Free);
                    self.start_source(slot, ingest, reply);
                }
            }
        }
    }

    /// Ends a handover no core will serve (shutdown): a viewer gets a 503 and is closed; a
    /// source is closed here, which ends its stream as any source's at a stop.
    fn end_handoff(&mut self, h: Handoff, queue: usize) {
        match h {
            Handoff::Viewer {
                fd, stream, child, ..
            } => {
                self.shared.placed[queue].fetch_sub(1, Ordering::Relaxed);
                self.shared.event(left(&stream.name, child));
                turn_away(fd);
                self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            }
            Handoff::Source { fd, ingest, .. } => {
                self.m().connections.fetch_add(1, Ordering::Relaxed);
                self.m().sources.fetch_add(1, Ordering::Relaxed);
                let slot = self.alloc_conn(fd, State::Source(ingest));
                self.sources.push(slot);
                self.close(slot);
            }
        }
    }

    pub(super) fn start_viewer(
        &mut self,
        slot: u32,
        s: Arc<Stream>,
        from: Option<Option<u64>>,
        child: Option<u32>,
    ) {
        let core = self.id;
        let van = from.is_some();
        let sub_index = self.fanout.join(&s, slot);
        self.joins.joined();
        let (cur, pin, gap) = sendplan::start(&s, core, from, self.shared.cfg.burst_bytes);
        let prefix = frontdoor::viewer_prefix(&s, van, gap);
        let c = &self.conns[slot as usize];
        let fd = c.fd;
        let generation = c.generation;
        let zc = !van
            && match self.shared.cfg.zerocopy {
                ZeroCopy::Off => false,
                ZeroCopy::On => true,
                // A peer on this host (loopback, or an address of ours) is reached through `lo`,
                // where the kernel copies every send_zc anyway, at more cost than a plain send:
                // `auto` would learn it only from the first notifications, and a crowd of local
                // viewers joining at once pays for those first sends (issue 9, perf).
                ZeroCopy::Auto => !peer_on_this_host(fd),
            };
        limit_unsent(fd, self.shared.cfg.viewer_unsent_max);
        debug!(core, stream = %s.name, van, start = cur.seq, gap = ?gap, "viewer joined");
        if van {
            s.van_viewers.fetch_add(1, Ordering::Relaxed);
            self.m().van_viewers.fetch_add(1, Ordering::Relaxed);
        } else {
            s.viewers.fetch_add(1, Ordering::Relaxed);
            self.m().viewers.fetch_add(1, Ordering::Relaxed);
        }
        let msg = van.then(|| {
            Box::new(VanMsg {
                iov: [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; 2 * VAN_BATCH],
                // SAFETY: msghdr is plain old data; all-zero is its empty value.
                msg: unsafe { std::mem::zeroed() },
            })
        });
        self.conns[slot as usize].state = State::Viewer(Box::new(Viewer {
            stream: s,
            plan: SendPlan::new(van, cur, pin, prefix),
            van: msg,
            zc,
            sub_index,
            child,
        }));
        // Hang-up detection without a receive buffer.
        self.conns[slot as usize].poll_armed = true;
        let mask = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;
        let e = opcode::PollAdd::new(types::Fd(fd), mask)
            .multi(true)
            .build()
            .user_data(ud(K_POLL, slot, generation));
        self.submit(slot, e);
        self.try_send(slot);
    }
}

/// Whether `fd`'s peer is on this host: a loopback address, or the address the connection came
/// in on. Unknown counts as remote (send_zc then finds out for itself).
fn peer_on_this_host(fd: RawFd) -> bool {
    // SAFETY: fd is this viewer's open socket, borrowed for these two calls only.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&fd);
    let ip = |a: socket2::SockAddr| a.as_socket().map(|a| a.ip().to_canonical());
    match (
        sock.peer_addr().ok().and_then(ip),
        sock.local_addr().ok().and_then(ip),
    ) {
        (Some(peer), Some(local)) => peer.is_loopback() || peer == local,
        _ => false,
    }
}

/// Caps the bytes `fd` holds not yet sent (`--viewer-unsent-max`). Ten thousand viewers that
/// fall a second behind together would otherwise queue a copy of that second each in kernel
/// memory, past `tcp_mem`'s pressure mark, where the kernel prunes and drops and every viewer
/// waits on retransmissions (issue 9). Past the cap, the stream waits in the pool.
fn limit_unsent(fd: RawFd, bytes: u32) {
    if bytes == 0 {
        return;
    }
    let v = bytes.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: fd is this viewer's open socket; the option value is a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        debug!("TCP_NOTSENT_LOWAT not set: {}", io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::peer_on_this_host;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_loopback_peer_is_on_this_host() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        assert!(peer_on_this_host(served.as_raw_fd()));
        assert!(peer_on_this_host(client.as_raw_fd()));
    }

    #[test]
    fn a_socket_without_a_peer_counts_as_remote() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!peer_on_this_host(listener.as_raw_fd()));
    }
}
