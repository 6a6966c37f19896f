//! The directory of streams: which names are live, in grace, or free.
//!
//! A [`Stream`] is shared by every core (its [`StreamWindow`] is what they read). The directory
//! lock is taken only when a connection's request is routed (a source attaching or leaving, a
//! viewer joining, a grace period running out), never per byte or per frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::window::{StreamWindow, WindowConfig, Writer};

const LIVE: u8 = 0;
const GRACE: u8 = 1;
const ENDED: u8 = 2;

/// Where a stream is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// A source is connected.
    Live,
    /// The source left; it may come back until the deadline.
    Grace,
    /// Over: viewers finish what is queued and are let go; the name is free.
    Ended,
}

pub struct Stream {
    pub id: u64,
    pub name: String,
    pub window: StreamWindow,
    state: AtomicU8,
    grace_deadline_us: AtomicU64,
    content_type: Mutex<String>,
    /// MPEG-TS by content type or by the sync bytes seen in the first reads.
    pub is_ts: AtomicBool,
    /// The writer, parked here while no source holds it (grace period).
    writer: Mutex<Option<Box<Writer>>>,
    /// Latest PAT + PMT, sent to a new MPEG-TS viewer before its first keyframe.
    psi: Mutex<Option<Arc<[u8]>>>,
    pub viewers: AtomicU64,
    pub van_viewers: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Bit `c` set while core `c` has local subscribers (so ingest knows whom to wake).
    pub subscribed_cores: AtomicU64,
}

impl Stream {
    pub fn state(&self) -> StreamState {
        match self.state.load(Ordering::Acquire) {
            LIVE => StreamState::Live,
            GRACE => StreamState::Grace,
            _ => StreamState::Ended,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.state.load(Ordering::Acquire) == ENDED
    }

    pub fn content_type(&self) -> String {
        self.content_type
            .lock()
            .expect("content type lock never poisoned")
            .clone()
    }

    pub fn set_content_type(&self, ct: &str) {
        *self
            .content_type
            .lock()
            .expect("content type lock never poisoned") = ct.to_owned();
    }

    pub fn psi(&self) -> Option<Arc<[u8]>> {
        self.psi.lock().expect("psi lock never poisoned").clone()
    }

    /// Stores new PSI if it differs from what is cached (called by ingest once per PAT/PMT
    /// change, not per read).
    pub fn set_psi(&self, bytes: &[u8]) {
        let mut psi = self.psi.lock().expect("psi lock never poisoned");
        if psi.as_deref() != Some(bytes) {
            *psi = Some(Arc::from(bytes));
        }
    }
}

/// Why a source cannot publish.
#[derive(Debug, PartialEq, Eq)]
pub enum AttachError {
    /// Another source is live on that name (409).
    Busy,
}

pub struct Registry {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    next_id: AtomicU64,
    window: WindowConfig,
    cores: usize,
    block_size: usize,
}

impl Registry {
    pub fn new(window: WindowConfig, cores: usize, block_size: usize) -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            window,
            cores,
            block_size,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.streams
            .lock()
            .expect("stream directory never poisoned")
    }

    /// A source publishes `name`: a new stream, or the same stream continued if it is in grace
    /// (sequence numbers go on). Returns the stream and its writer, which the source's
    /// connection owns until it leaves.
    pub fn attach_source(
        &self,
        name: &str,
        content_type: &str,
    ) -> Result<(Arc<Stream>, Box<Writer>, bool), AttachError> {
        let mut map = self.map();
        if let Some(s) = map.get(name) {
            if s.state() != StreamState::Grace {
                return Err(AttachError::Busy);
            }
            let writer = s
                .writer
                .lock()
                .expect("writer lock never poisoned")
                .take()
                .expect("a stream in grace has its writer parked");
            *s.content_type.lock().expect("never poisoned") = content_type.to_owned();
            s.state.store(LIVE, Ordering::Release);
            return Ok((s.clone(), writer, true));
        }
        let window = StreamWindow::new(&self.window, self.cores, 0);
        let writer = Box::new(Writer::new(self.window, self.block_size, &window));
        let stream = Arc::new(Stream {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.to_owned(),
            window,
            state: AtomicU8::new(LIVE),
            grace_deadline_us: AtomicU64::new(0),
            content_type: Mutex::new(content_type.to_owned()),
            is_ts: AtomicBool::new(false),
            writer: Mutex::new(None),
            psi: Mutex::new(None),
            viewers: AtomicU64::new(0),
            van_viewers: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            subscribed_cores: AtomicU64::new(0),
        });
        map.insert(name.to_owned(), stream.clone());
        Ok((stream, writer, false))
    }

    /// The source left: park the writer and start the grace period.
    pub fn detach_source(&self, stream: &Arc<Stream>, writer: Box<Writer>, deadline_us: u64) {
        let _map = self.map();
        *stream.writer.lock().expect("never poisoned") = Some(writer);
        stream
            .grace_deadline_us
            .store(deadline_us, Ordering::Relaxed);
        stream.state.store(GRACE, Ordering::Release);
    }

    /// A viewer asks for `name`: found while live or in grace.
    pub fn lookup(&self, name: &str) -> Option<Arc<Stream>> {
        self.map().get(name).cloned()
    }

    /// Ends `stream` if its grace period is over at `now_us`. Returns its parked writer (the
    /// caller frees the blocks once no core uses them) when it ended.
    pub fn expire(&self, stream: &Arc<Stream>, now_us: u64) -> Option<Box<Writer>> {
        let mut map = self.map();
        if stream.state() != StreamState::Grace
            || stream.grace_deadline_us.load(Ordering::Relaxed) > now_us
        {
            return None;
        }
        map.remove(&stream.name);
        stream.state.store(ENDED, Ordering::Release);
        stream.writer.lock().expect("never poisoned").take()
    }

    /// Shutdown: every stream ends. Returns the writers parked in grace.
    pub fn end_all(&self) -> Vec<(Arc<Stream>, Box<Writer>)> {
        let mut map = self.map();
        let mut parked = Vec::new();
        for (_, s) in map.drain() {
            s.state.store(ENDED, Ordering::Release);
            if let Some(w) = s.writer.lock().expect("never poisoned").take() {
                parked.push((s.clone(), w));
            }
        }
        parked
    }

    /// Marks a live stream ended whose source is going away at shutdown (the source's core
    /// keeps its writer and frees the blocks).
    pub fn end_live(&self, stream: &Arc<Stream>) {
        let mut map = self.map();
        if map
            .get(&stream.name)
            .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            map.remove(&stream.name);
        }
        stream.state.store(ENDED, Ordering::Release);
    }

    pub fn snapshot(&self) -> Vec<Arc<Stream>> {
        let mut v: Vec<_> = self.map().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registry {
        Registry::new(WindowConfig::default(), 2, 65536)
    }

    #[test]
    fn second_source_is_refused_while_live() {
        let r = reg();
        let (_s, _w, resumed) = r.attach_source("a", "video/mp2t").unwrap();
        assert!(!resumed);
        assert!(matches!(
            r.attach_source("a", "video/mp2t"),
            Err(AttachError::Busy)
        ));
        assert!(r.attach_source("b", "x").is_ok());
    }

    #[test]
    fn reconnect_in_grace_continues_and_expiry_frees_the_name() {
        let r = reg();
        let (s, w, _) = r.attach_source("a", "video/mp2t").unwrap();
        r.detach_source(&s, w, 1000);
        assert_eq!(s.state(), StreamState::Grace);
        assert!(r.lookup("a").is_some());
        assert!(r.expire(&s, 999).is_none());
        let (s2, w2, resumed) = r.attach_source("a", "application/octet-stream").unwrap();
        assert!(resumed && Arc::ptr_eq(&s, &s2));
        assert_eq!(s2.content_type(), "application/octet-stream");
        r.detach_source(&s2, w2, 2000);
        assert!(r.expire(&s2, 2001).is_some());
        assert!(s2.is_ended());
        assert!(r.lookup("a").is_none());
        let (s3, _, resumed) = r.attach_source("a", "x").unwrap();
        assert!(!resumed && !Arc::ptr_eq(&s, &s3));
    }
}
