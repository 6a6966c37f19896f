//! The directory of streams: which names are live, in grace, or free, and what feeds each.
//!
//! A [`Stream`] is shared by every core (its [`StreamWindow`] is what they read). The directory
//! lock is taken only when a connection's request is routed (a feed attaching or leaving, a
//! viewer joining, a grace period running out), never per byte or per frame.
//!
//! Life cycle, the same for both kinds of [`Feed`]: a feed attaches and the stream is live; the
//! feed leaves and the stream is in grace, its writer parked, until the deadline; a feed of the
//! same kind that attaches meanwhile continues it (same window, sequence numbers go on);
//! otherwise the stream ends and the name is free. A stream in grace is not continued by a feed
//! of the other kind (refused as busy until the grace ends): a source's numbers and the parents'
//! are unrelated, and mixing them would make every parent frame look stale or a jump.
//!
//! A stream remembers who published it (the Basic-auth user, or [`LOOPBACK`] for a source
//! taken without credentials): in grace only that publisher continues it, so that another
//! account allowed on the name cannot take the viewers over (issue 8, defect 3).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::window::{StreamWindow, WindowConfig, Writer};

/// The publisher of a source taken without credentials (from loopback).
pub const LOOPBACK: &str = "loopback";

const LIVE: u8 = 0;
const GRACE: u8 = 1;
const ENDED: u8 = 2;

/// Where a stream is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// A feed is attached (a source connected, or parents delivering).
    Live,
    /// The feed left; one of the same kind may take the stream on until the deadline.
    Grace,
    /// Over: viewers finish what is queued and are let go; the name is free.
    Ended,
}

/// What feeds a stream. Fixed for the stream's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// An HTTP source (`PUT`/`SOURCE /live/{stream}`): this proxy numbers the frames, from 0.
    Source,
    /// One or several parent proxies (`GET /van/{stream}`): the frames keep the parents'
    /// sequence numbers and copies from several parents are one frame ([0029], [0044]); see
    /// [`Writer::publish_at`]. While at least one parent delivers, the stream is live.
    Parents,
}

pub struct Stream {
    pub id: u64,
    pub name: String,
    pub feed: Feed,
    /// Who published it: only they continue it in grace (empty for a parents' feed).
    pub publisher: String,
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

/// Why a feed cannot attach.
#[derive(Debug, PartialEq, Eq)]
pub enum AttachError {
    /// Another feed is live on that name, or one of the other kind holds it in grace (409).
    Busy,
    /// The stream is in grace and belongs to another publisher (409).
    NotPublisher,
    /// The relay holds `--max-streams` streams already (503).
    TooManyStreams,
    /// The publisher holds `--max-streams-per-source` streams already (429).
    TooManyForPublisher,
}

/// How many streams the relay takes (issue 8, defect 1): a refused feed gets an answer, the
/// streams already there are untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams at once, live or in grace (`--max-streams`).
    pub max_streams: usize,
    /// Streams one publisher (a source account, or loopback) holds at once, live or in grace
    /// (`--max-streams-per-source`).
    pub max_per_publisher: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_streams: 1000,
            max_per_publisher: 8,
        }
    }
}

pub struct Registry {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    next_id: AtomicU64,
    window: WindowConfig,
    cores: usize,
    block_size: usize,
    limits: StreamLimits,
}

impl Registry {
    pub fn new(window: WindowConfig, cores: usize, block_size: usize) -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            window,
            cores,
            block_size,
            limits: StreamLimits::default(),
        }
    }

    /// The same directory with other limits on how many streams it takes.
    pub fn with_limits(self, limits: StreamLimits) -> Self {
        Self { limits, ..self }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.streams
            .lock()
            .expect("stream directory never poisoned")
    }

    /// A source publishes `name`: a new stream numbered from 0, or the same stream continued if
    /// a source left it in grace (sequence numbers go on). Returns the stream and its writer,
    /// which the source's connection owns until it leaves, and whether it was continued.
    /// Only `publisher`, the one who published it first, continues a stream in grace.
    pub fn attach_source(
        &self,
        name: &str,
        content_type: &str,
        publisher: &str,
    ) -> Result<(Arc<Stream>, Box<Writer>, bool), AttachError> {
        self.attach(name, Feed::Source, content_type, 0, publisher)
    }

    /// Parent proxies feed `name`: a new stream whose window starts at `first_seq` (the parent's
    /// number of the first frame it will send, so that nothing counts as a jump at the start),
    /// or the stream continued if its parents left it in grace (then `first_seq` is not used:
    /// the writer goes on from where it was, and asks its new parent for that). Same return as
    /// [`Registry::attach_source`].
    pub fn attach_parents(
        &self,
        name: &str,
        content_type: &str,
        first_seq: u64,
    ) -> Result<(Arc<Stream>, Box<Writer>, bool), AttachError> {
        self.attach(name, Feed::Parents, content_type, first_seq, "")
    }

    fn attach(
        &self,
        name: &str,
        feed: Feed,
        content_type: &str,
        first_seq: u64,
        publisher: &str,
    ) -> Result<(Arc<Stream>, Box<Writer>, bool), AttachError> {
        let mut map = self.map();
        if let Some(s) = map.get(name) {
            if s.state() != StreamState::Grace || s.feed != feed {
                return Err(AttachError::Busy);
            }
            if s.publisher != publisher {
                return Err(AttachError::NotPublisher);
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
        if map.len() >= self.limits.max_streams {
            return Err(AttachError::TooManyStreams);
        }
        // A scan, not a per-publisher count to keep in step: only on a new stream's attach.
        if feed == Feed::Source
            && map.values().filter(|s| s.publisher == publisher).count()
                >= self.limits.max_per_publisher
        {
            return Err(AttachError::TooManyForPublisher);
        }
        let window = StreamWindow::new(&self.window, self.cores, first_seq);
        let writer = Box::new(Writer::new(self.window, self.block_size, &window));
        let stream = Arc::new(Stream {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.to_owned(),
            feed,
            publisher: publisher.to_owned(),
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

    /// The feed left (the source closed, or the last parent was lost): park the writer and
    /// start the grace period.
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

    /// Marks a live stream ended whose feed is going away at shutdown (the feed's core keeps
    /// its writer and frees the blocks).
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
        let (_s, _w, resumed) = r.attach_source("a", "video/mp2t", LOOPBACK).unwrap();
        assert!(!resumed);
        assert!(matches!(
            r.attach_source("a", "video/mp2t", LOOPBACK),
            Err(AttachError::Busy)
        ));
        assert!(r.attach_source("b", "x", LOOPBACK).is_ok());
    }

    #[test]
    fn reconnect_in_grace_continues_and_expiry_frees_the_name() {
        let r = reg();
        let (s, w, _) = r.attach_source("a", "video/mp2t", LOOPBACK).unwrap();
        r.detach_source(&s, w, 1000);
        assert_eq!(s.state(), StreamState::Grace);
        assert!(r.lookup("a").is_some());
        assert!(r.expire(&s, 999).is_none());
        let (s2, w2, resumed) = r
            .attach_source("a", "application/octet-stream", LOOPBACK)
            .unwrap();
        assert!(resumed && Arc::ptr_eq(&s, &s2));
        assert_eq!(s2.content_type(), "application/octet-stream");
        r.detach_source(&s2, w2, 2000);
        assert!(r.expire(&s2, 2001).is_some());
        assert!(s2.is_ended());
        assert!(r.lookup("a").is_none());
        let (s3, _, resumed) = r.attach_source("a", "x", LOOPBACK).unwrap();
        assert!(!resumed && !Arc::ptr_eq(&s, &s3));
    }

    #[test]
    fn defect3_only_its_publisher_continues_a_stream_in_grace() {
        let r = reg();
        let (s, w, _) = r.attach_source("a", "video/mp2t", "ann").unwrap();
        assert_eq!(s.publisher, "ann");
        assert_eq!(
            r.attach_source("a", "video/mp2t", "bob").err(),
            Some(AttachError::Busy)
        );
        r.detach_source(&s, w, 1000);
        assert_eq!(
            r.attach_source("a", "video/mp2t", "bob").err(),
            Some(AttachError::NotPublisher)
        );
        assert_eq!(
            r.attach_source("a", "video/mp2t", LOOPBACK).err(),
            Some(AttachError::NotPublisher)
        );
        assert_eq!(s.state(), StreamState::Grace, "the stream is untouched");
        let (s2, _, resumed) = r.attach_source("a", "video/mp2t", "ann").unwrap();
        assert!(resumed && Arc::ptr_eq(&s, &s2));
    }

    #[test]
    fn defect1_streams_are_capped_per_publisher_and_in_total() {
        let r = reg().with_limits(StreamLimits {
            max_streams: 3,
            max_per_publisher: 2,
        });
        let (a1, w, _) = r.attach_source("a1", "x", "ann").unwrap();
        r.attach_source("a2", "x", "ann").unwrap();
        assert_eq!(
            r.attach_source("a3", "x", "ann").err(),
            Some(AttachError::TooManyForPublisher)
        );
        // A stream in grace still counts, and its publisher may still continue it.
        r.detach_source(&a1, w, 1000);
        assert_eq!(
            r.attach_source("a3", "x", "ann").err(),
            Some(AttachError::TooManyForPublisher)
        );
        assert!(r.attach_source("a1", "x", "ann").is_ok());
        r.attach_source("b1", "x", "bob").unwrap();
        assert_eq!(
            r.attach_source("b2", "x", "bob").err(),
            Some(AttachError::TooManyStreams)
        );
        assert_eq!(
            r.attach_parents("p", "x", 0).err(),
            Some(AttachError::TooManyStreams)
        );
        assert_eq!(r.snapshot().len(), 3, "the streams there are untouched");
    }

    #[test]
    fn a_parents_feed_keeps_their_numbers_and_resumes_in_grace() {
        let r = reg();
        let (s, w, resumed) = r
            .attach_parents("a", crate::frame::CONTENT_TYPE, 500)
            .unwrap();
        assert!(!resumed);
        assert_eq!(s.feed, Feed::Parents);
        assert_eq!((s.window.first_seq(), s.window.next_seq()), (500, 500));
        assert_eq!(w.next_seq(), 500);
        assert_eq!(r.attach_parents("a", "x", 0).err(), Some(AttachError::Busy));
        r.detach_source(&s, w, 1000);
        assert_eq!(s.state(), StreamState::Grace);
        // The writer goes on from where it was: the new parent is asked for that.
        let (s2, w2, resumed) = r.attach_parents("a", "x", 7).unwrap();
        assert!(resumed && Arc::ptr_eq(&s, &s2));
        assert_eq!((w2.next_seq(), s2.state()), (500, StreamState::Live));
    }

    #[test]
    fn a_stream_in_grace_is_continued_only_by_its_own_kind_of_feed() {
        let r = reg();
        let (s, w, _) = r.attach_source("a", "video/mp2t", LOOPBACK).unwrap();
        assert_eq!(s.feed, Feed::Source);
        r.detach_source(&s, w, 1000);
        assert_eq!(r.attach_parents("a", "x", 0).err(), Some(AttachError::Busy));
        let (p, pw, _) = r.attach_parents("b", "x", 0).unwrap();
        r.detach_source(&p, pw, 1000);
        assert_eq!(
            r.attach_source("b", "x", LOOPBACK).err(),
            Some(AttachError::Busy)
        );
        // Once the grace is over the name is free for either kind.
        assert!(r.expire(&s, 1001).is_some());
        let (s2, _, resumed) = r.attach_parents("a", "x", 42).unwrap();
        assert!(!resumed && s2.feed == Feed::Parents && s2.window.next_seq() == 42);
    }
}
