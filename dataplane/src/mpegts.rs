//! Keyframes and PSI of an MPEG-TS stream (ISO/IEC 13818-1), so that a viewer who joins a live
//! MPEG-TS stream can be started where a player decodes from its first byte with no errors.
//!
//! [`TsScanner`] follows the stream as the source's bytes arrive, in pieces of any size, and
//! reports the absolute stream offset of every TS packet that begins a random-access point (RAP):
//! - on the video PID, a packet that starts a PES whose first NAL units hold an H.264 IDR slice or
//!   SPS, an HEVC IRAP picture or VPS/SPS, or an MPEG-2 sequence header; or whose adaptation field
//!   sets `random_access_indicator`;
//! - in a stream with no video, a packet with `random_access_indicator` on any PID (every audio
//!   frame is a RAP, and muxers flag them so).
//!
//! It also keeps the latest PAT and PMT packets ([`TsScanner::psi`]). A viewer sent those, then
//! the stream from a RAP, can decode at once even if the next PAT/PMT comes much later.
//!
//! What it does not do: no I/O, no PES reassembly or copying of the stream (it looks at the
//! first packet of each video PES only: muxers put the parameter sets and the slice header of a
//! keyframe there), no sections spanning packets (PAT and PMT of one program always fit in one),
//! only the first program of the PAT, only 188-byte packets.
//!
//! Sync: it locks on a 0x47 byte followed by another 188 bytes on, keeps at most one partial
//! packet between calls once locked (two while it searches), and re-synchronises if a packet
//! does not begin with 0x47 or the offsets of two calls are not contiguous.

/// Size of one transport stream packet.
pub const TS_PACKET: usize = 188;

const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1fff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VideoCodec {
    Mpeg2,
    H264,
    Hevc,
}

impl VideoCodec {
    /// From a PMT stream_type.
    fn from_stream_type(t: u8) -> Option<Self> {
        match t {
            0x01 | 0x02 => Some(Self::Mpeg2),
            0x1b => Some(Self::H264),
            0x24 => Some(Self::Hevc),
            _ => None,
        }
    }

    /// True if the NAL unit (or start code) whose first byte after `00 00 01` is `b` begins a
    /// random-access point.
    fn is_rap_unit(self, b: u8) -> bool {
        match self {
            // sequence_header_code 0xB3
            VideoCodec::Mpeg2 => b == 0xb3,
            // nal_unit_type 5 (IDR slice), 7 (SPS)
            VideoCodec::H264 => matches!(b & 0x1f, 5 | 7),
            // nal_unit_type 16..=21 (BLA, IDR, CRA), 32 (VPS), 33 (SPS)
            VideoCodec::Hevc => matches!((b >> 1) & 0x3f, 16..=21 | 32 | 33),
        }
    }
}

/// Follows one MPEG-TS stream: sync, PSI, random-access points.
#[derive(Clone, Debug)]
pub struct TsScanner {
    /// Bytes carried between calls: part of a packet when locked, the sync search window when
    /// not. Allocated once, at most `2 * TS_PACKET` long.
    pending: Vec<u8>,
    /// Absolute offset of `pending[0]`.
    pending_offset: u64,
    /// The offset the next call should start at; `None` before the first call.
    next_offset: Option<u64>,
    locked: bool,
    pmt_pid: Option<u16>,
    video: Option<(u16, VideoCodec)>,
    /// A PMT was seen and has no video stream: audio-only, RAPs come from the indicator alone.
    no_video: bool,
    /// The latest PAT (first 188 bytes) and PMT packet (last 188 bytes).
    psi: Box<[u8; 2 * TS_PACKET]>,
    have_pat: bool,
    have_pmt: bool,
}

impl Default for TsScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl TsScanner {
    pub fn new() -> Self {
        Self {
            pending: Vec::with_capacity(2 * TS_PACKET),
            pending_offset: 0,
            next_offset: None,
            locked: false,
            pmt_pid: None,
            video: None,
            no_video: false,
            psi: Box::new([0; 2 * TS_PACKET]),
            have_pat: false,
            have_pmt: false,
        }
    }

    /// Scans `bytes`, appended to the stream at absolute offset `offset`. Pushes to `raps`, in
    /// ascending order, the absolute offsets of the TS packets that begin a random-access point.
    /// A packet is reported once its 188 bytes have arrived.
    pub fn scan(&mut self, offset: u64, bytes: &[u8], raps: &mut Vec<u64>) {
        if self.next_offset.is_some_and(|expected| expected != offset) {
            // A gap or overlap (e.g. a reconnected source): whatever was pending is not
            // followed by these bytes.
            self.pending.clear();
            self.locked = false;
        }
        self.next_offset = Some(offset + bytes.len() as u64);
        if self.pending.is_empty() {
            self.pending_offset = offset;
        }
        let mut input = bytes;
        let mut input_offset = offset;
        while !input.is_empty() || (self.locked && self.pending.len() >= TS_PACKET) {
            if !self.locked {
                let room = 2 * TS_PACKET - self.pending.len();
                let take = room.min(input.len());
                self.pending.extend_from_slice(&input[..take]);
                input = &input[take..];
                input_offset += take as u64;
                self.search_sync();
                if !self.locked {
                    continue;
                }
            }
            // Locked: complete and scan the packets in `pending` first.
            while !self.pending.is_empty() {
                if self.pending.len() < TS_PACKET {
                    let take = (TS_PACKET - self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    input_offset += take as u64;
                    if self.pending.len() < TS_PACKET {
                        return;
                    }
                }
                let mut packet = [0u8; TS_PACKET];
                packet.copy_from_slice(&self.pending[..TS_PACKET]);
                let at = self.pending_offset;
                self.pending.drain(..TS_PACKET);
                self.pending_offset += TS_PACKET as u64;
                if !self.packet(at, &packet, raps) {
                    // Lost sync: search again from the byte after the bad packet's first.
                    let rest = self.pending.split_off(0);
                    self.pending.clear();
                    self.pending.extend_from_slice(&packet[1..]);
                    self.pending.extend_from_slice(&rest);
                    self.pending.truncate(2 * TS_PACKET);
                    self.pending_offset = at + 1;
                    self.locked = false;
                    break;
                }
            }
            if !self.locked {
                continue;
            }
            // Whole packets straight from the input, without copying.
            while input.len() >= TS_PACKET {
                let (packet, rest) = input.split_at(TS_PACKET);
                if !self.packet(input_offset, packet, raps) {
                    self.locked = false;
                    self.pending_offset = input_offset + 1;
                    input = &input[1..];
                    input_offset += 1;
                    break;
                }
                input = rest;
                input_offset += TS_PACKET as u64;
            }
            if self.locked {
                self.pending_offset = input_offset;
                self.pending.extend_from_slice(input);
                return;
            }
        }
    }

    /// Looks for sync in `pending` (unlocked): a 0x47 with another 0x47 one packet on. Drops the
    /// bytes before the first candidate.
    fn search_sync(&mut self) {
        let mut drop = self.pending.len();
        for (i, &b) in self.pending.iter().enumerate() {
            if b != SYNC {
                continue;
            }
            match self.pending.get(i + TS_PACKET) {
                Some(&SYNC) => {
                    self.locked = true;
                    drop = i;
                    break;
                }
                Some(_) => {}
                None => {
                    drop = i;
                    break;
                }
            }
        }
        self.pending.drain(..drop);
        self.pending_offset += drop as u64;
    }

    /// Scans one packet at absolute offset `at`. False if it does not begin with the sync byte.
    fn packet(&mut self, at: u64, p: &[u8], raps: &mut Vec<u64>) -> bool {
        if p[0] != SYNC {
            return false;
        }
        // transport_error_indicator: the packet is known to be damaged.
        if p[1] & 0x80 != 0 {
            return true;
        }
        let unit_start = p[1] & 0x40 != 0;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        if pid == NULL_PID {
            return true;
        }
        let control = (p[3] >> 4) & 0x3;
        let mut payload_start = 4;
        let mut random_access = false;
        if control & 0x2 != 0 {
            let len = usize::from(p[4]);
            if len > TS_PACKET - 5 {
                return true; // Malformed adaptation field: nothing usable in this packet.
            }
            if len > 0 {
                random_access = p[5] & 0x40 != 0;
            }
            payload_start = 5 + len;
        }
        let payload = if control & 0x1 != 0 {
            &p[payload_start..]
        } else {
            &[][..]
        };

        if pid == PAT_PID {
            if unit_start {
                self.pat(p, payload);
            }
            return true;
        }
        if Some(pid) == self.pmt_pid {
            if unit_start {
                self.pmt(p, payload);
            }
            return true;
        }
        let rap = match self.video {
            Some((video_pid, codec)) if pid == video_pid => {
                random_access || (unit_start && pes_starts_rap(payload, codec))
            }
            Some(_) => false,
            None => self.no_video && random_access,
        };
        if rap {
            raps.push(at);
        }
        true
    }

    fn pat(&mut self, packet: &[u8], payload: &[u8]) {
        let Some(section) = section(payload, 0x00) else {
            return;
        };
        // After the 8-byte header: (program_number, PID) pairs; program 0 is the network PID.
        let pmt_pid = section[8..]
            .chunks_exact(4)
            .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
            .map(|e| u16::from(e[2] & 0x1f) << 8 | u16::from(e[3]));
        let Some(pmt_pid) = pmt_pid else {
            return;
        };
        if self.pmt_pid != Some(pmt_pid) {
            self.pmt_pid = Some(pmt_pid);
            self.video = None;
            self.no_video = false;
            self.have_pmt = false;
        }
        self.psi[..TS_PACKET].copy_from_slice(packet);
        self.have_pat = true;
    }

    fn pmt(&mut self, packet: &[u8], payload: &[u8]) {
        let Some(section) = section(payload, 0x02) else {
            return;
        };
        if section.len() < 12 {
            return;
        }
        let program_info_len = usize::from(section[10] & 0x0f) << 8 | usize::from(section[11]);
        let mut streams = section.get(12 + program_info_len..).unwrap_or_default();
        let mut video = None;
        while streams.len() >= 5 {
            let stream_type = streams[0];
            let pid = u16::from(streams[1] & 0x1f) << 8 | u16::from(streams[2]);
            let info_len = usize::from(streams[3] & 0x0f) << 8 | usize::from(streams[4]);
            if video.is_none() {
                video = VideoCodec::from_stream_type(stream_type).map(|c| (pid, c));
            }
            streams = streams.get(5 + info_len..).unwrap_or_default();
        }
        self.video = video;
        self.no_video = video.is_none();
        self.psi[TS_PACKET..].copy_from_slice(packet);
        self.have_pmt = true;
    }

    /// The latest PAT and PMT packets (188 bytes each, PAT first), to send a new viewer before
    /// its first RAP. `None` until both were seen.
    pub fn psi(&self) -> Option<&[u8]> {
        (self.have_pat && self.have_pmt).then_some(&self.psi[..])
    }

    /// True while the scanner is in sync with the packet boundaries.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

/// The section of table `table_id` that starts in this payload (after the pointer field), cut
/// to its `section_length` without the CRC, if it is whole in this packet.
fn section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    if section.len() < 8 || section[0] != table_id {
        return None;
    }
    let length = usize::from(section[1] & 0x0f) << 8 | usize::from(section[2]);
    // Header (3 bytes) + length, of which the last 4 are the CRC.
    if length < 9 || section.len() < 3 + length {
        return None;
    }
    Some(&section[..3 + length - 4])
}

/// True if this PES payload (from a packet with payload_unit_start) starts a video access unit
/// that is a random-access point: a start code in its first bytes that `codec` calls one.
fn pes_starts_rap(payload: &[u8], codec: VideoCodec) -> bool {
    // PES header: 00 00 01, stream_id, length (2), flags (2), header_data_length, header data.
    if payload.len() < 9 || payload[..3] != [0, 0, 1] {
        return false;
    }
    let Some(es) = payload.get(9 + usize::from(payload[8])..) else {
        return false;
    };
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            let unit = es[i + 3];
            if codec.is_rap_unit(unit) {
                return true;
            }
            // In H.264/HEVC, a coded slice ends the parameter sets of an access unit: what
            // follows it in the packet is slice data.
            if is_non_rap_slice(codec, unit) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

fn is_non_rap_slice(codec: VideoCodec, b: u8) -> bool {
    match codec {
        VideoCodec::Mpeg2 => b == 0x00, // picture_start_code
        VideoCodec::H264 => matches!(b & 0x1f, 1..=4),
        VideoCodec::Hevc => (b >> 1) & 0x3f <= 9,
    }
}

/// True if the content type says MPEG-TS (`video/mp2t`, `video/MP2T`, `video/mpeg-ts`,
/// `video/x-mpegts`, `application/x-mpegts` ...), parameters ignored.
pub fn is_ts_content_type(ct: &str) -> bool {
    let media = ct.split(';').next().unwrap_or_default().trim();
    let Some((_, subtype)) = media.split_once('/') else {
        return false;
    };
    let subtype = subtype.trim().to_ascii_lowercase();
    let subtype = subtype.strip_prefix("x-").unwrap_or(&subtype);
    matches!(subtype, "mp2t" | "mpeg-ts" | "mpegts" | "mpeg2-ts")
}

/// True if `bytes`, the first bytes of a stream, look like MPEG-TS: sync bytes at 188-byte
/// spacing from the start, at least two of them. For sources that send a wrong content type
/// (ffmpeg's `icecast://` says `audio/mpeg` for any format unless told `-content_type`).
pub fn looks_like_ts(bytes: &[u8]) -> bool {
    let syncs = bytes.iter().step_by(TS_PACKET).take(4);
    bytes.len() > TS_PACKET && syncs.clone().all(|&b| b == SYNC)
}

/// Sample MPEG-TS streams for tests here and in [`crate::ingest`].
#[cfg(test)]
pub(crate) mod sample {
    use super::*;

    /// A TS packet: PID, payload_unit_start, optional adaptation field flags, payload padded
    /// with 0xff stuffing at the end.
    pub(crate) fn packet(
        pid: u16,
        unit_start: bool,
        af_flags: Option<u8>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![
            SYNC,
            (u8::from(unit_start) << 6) | (pid >> 8) as u8,
            pid as u8,
        ];
        let free = TS_PACKET - 4 - payload.len();
        match af_flags {
            Some(flags) => {
                p.push(0x30);
                p.push((free - 1) as u8);
                if free > 1 {
                    p.push(flags);
                    p.resize(4 + free, 0xff);
                }
            }
            None if free > 0 => {
                // Stuff with an adaptation field of the free length.
                p.push(0x30);
                p.push((free - 1) as u8);
                if free > 1 {
                    p.push(0);
                    p.resize(4 + free, 0xff);
                }
            }
            None => p.push(0x10),
        }
        p.extend_from_slice(payload);
        assert_eq!(p.len(), TS_PACKET);
        p
    }

    fn with_section(table: &[u8]) -> Vec<u8> {
        // pointer_field 0, the section, then a fake CRC.
        let mut s = vec![0];
        s.extend_from_slice(table);
        s.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        s
    }

    pub(crate) fn pat(pmt_pid: u16) -> Vec<u8> {
        let body = [
            0x00,
            0xb0,
            13,
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00,
            0x00,
            0x01,
            0xe0 | (pmt_pid >> 8) as u8,
            pmt_pid as u8,
        ];
        packet(PAT_PID, true, None, &with_section(&body))
    }

    pub(crate) fn pmt(pmt_pid: u16, streams: &[(u8, u16)]) -> Vec<u8> {
        let mut body = vec![
            0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00,
        ];
        for &(t, pid) in streams {
            body.extend_from_slice(&[t, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
        }
        body[2] = (body.len() - 3 + 4) as u8;
        packet(pmt_pid, true, None, &with_section(&body))
    }

    pub(crate) fn pes(nal_types: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        for &t in nal_types {
            p.extend_from_slice(&[0, 0, 0, 1, t, 0x88, 0x84]);
        }
        p
    }

    pub(crate) const VIDEO: u16 = 0x100;
    pub(crate) const AUDIO: u16 = 0x101;

    /// PAT, PMT, then a GOP pattern: a keyframe (AUD, SPS, PPS, IDR), continuation packets,
    /// audio, a non-key frame. Returns the stream and the offsets of its keyframe packets.
    pub(crate) fn stream(gops: usize) -> (Vec<u8>, Vec<u64>) {
        let mut s = Vec::new();
        let mut keys = Vec::new();
        for _ in 0..gops {
            s.extend(pat(0x1000));
            s.extend(pmt(0x1000, &[(0x1b, VIDEO), (0x0f, AUDIO)]));
            keys.push(s.len() as u64);
            s.extend(packet(VIDEO, true, Some(0x50), &pes(&[9, 7, 8, 5])));
            s.extend(packet(VIDEO, false, None, &[0x55; 184]));
            s.extend(packet(
                AUDIO,
                true,
                Some(0x40),
                &[0, 0, 1, 0xc0, 0, 0, 0x80, 0, 0],
            ));
            s.extend(packet(VIDEO, true, None, &pes(&[9, 1])));
            s.extend(packet(NULL_PID, false, None, &[0xff; 184]));
        }
        (s, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::sample::*;
    use super::*;
    use proptest::prelude::*;

    fn scan_all(s: &[u8], ends: &[usize]) -> (Vec<u64>, TsScanner) {
        let mut scanner = TsScanner::new();
        let mut raps = Vec::new();
        let mut ends: Vec<usize> = ends.to_vec();
        ends.push(s.len());
        ends.sort_unstable();
        let mut start = 0;
        for end in ends {
            scanner.scan(start as u64, &s[start..end], &mut raps);
            start = end;
        }
        (raps, scanner)
    }

    #[test]
    fn finds_h264_keyframes_and_psi() {
        let (s, keys) = stream(3);
        let (raps, scanner) = scan_all(&s, &[]);
        assert_eq!(raps, keys);
        assert!(scanner.is_locked());
        let psi = scanner.psi().unwrap();
        assert_eq!(&psi[..TS_PACKET], &s[..TS_PACKET]);
        assert_eq!(&psi[TS_PACKET..], &s[TS_PACKET..2 * TS_PACKET]);
    }

    #[test]
    fn keyframes_without_the_indicator_are_found_by_nal_type() {
        let mut s = pat(0x1000);
        s.extend(pmt(0x1000, &[(0x1b, VIDEO)]));
        s.extend(packet(VIDEO, true, None, &pes(&[9, 1])));
        s.extend(packet(VIDEO, true, None, &pes(&[9, 6, 5])));
        s.extend(packet(VIDEO, true, None, &pes(&[9, 1, 5])));
        assert_eq!(scan_all(&s, &[]).0, vec![3 * TS_PACKET as u64]);
    }

    #[test]
    fn hevc_and_mpeg2_keyframes() {
        let mut s = pat(0x1000);
        s.extend(pmt(0x1000, &[(0x24, VIDEO)]));
        s.extend(packet(VIDEO, true, None, &pes(&[35 << 1, 32 << 1]))); // AUD, VPS
        s.extend(packet(VIDEO, true, None, &pes(&[35 << 1, 1 << 1]))); // AUD, TRAIL_R
        s.extend(packet(VIDEO, true, None, &pes(&[19 << 1]))); // IDR_W_RADL
        assert_eq!(scan_all(&s, &[]).0, vec![376, 752]);
        let mut s = pat(0x1000);
        s.extend(pmt(0x1000, &[(0x02, VIDEO)]));
        s.extend(packet(VIDEO, true, None, &pes(&[0xb3])));
        s.extend(packet(VIDEO, true, None, &pes(&[0x00])));
        assert_eq!(scan_all(&s, &[]).0, vec![376]);
    }

    #[test]
    fn audio_only_streams_use_the_indicator() {
        let mut s = pat(0x1000);
        s.extend(pmt(0x1000, &[(0x0f, AUDIO)]));
        s.extend(packet(AUDIO, true, Some(0x40), &[0, 0, 1, 0xc0]));
        s.extend(packet(AUDIO, false, None, &[1; 184]));
        s.extend(packet(AUDIO, true, Some(0x40), &[0, 0, 1, 0xc0]));
        assert_eq!(scan_all(&s, &[]).0, vec![376, 752]);
    }

    #[test]
    fn nothing_before_the_pmt() {
        let mut s = packet(VIDEO, true, Some(0x40), &pes(&[5]));
        s.extend(pat(0x1000));
        s.extend(pmt(0x1000, &[(0x1b, VIDEO)]));
        s.extend(packet(VIDEO, true, Some(0x40), &pes(&[5])));
        let (raps, scanner) = scan_all(&s, &[]);
        assert_eq!(raps, vec![3 * 188]);
        assert!(scanner.psi().is_some());
        let (_, scanner) = scan_all(&s[..2 * 188], &[]);
        assert!(scanner.psi().is_none());
    }

    #[test]
    fn syncs_mid_packet_and_after_garbage() {
        let (s, keys) = stream(3);
        for skip in [1usize, 50, 187, 188, 189, 400] {
            let mut scanner = TsScanner::new();
            let mut raps = Vec::new();
            scanner.scan(skip as u64, &s[skip..], &mut raps);
            let want: Vec<u64> = keys.iter().copied().filter(|&k| k >= 2 * 188 * 7).collect();
            // Keys after the second PSI are always found (the first PSI may be cut).
            assert!(
                want.iter().all(|k| raps.contains(k)),
                "skip {skip}: {raps:?}"
            );
        }
        // Corrupt one packet: the scanner resyncs and still finds later keyframes.
        let mut bad = s.clone();
        bad[7 * 188] = 0x00;
        let (raps, scanner) = scan_all(&bad, &[1000, 1400]);
        assert!(scanner.is_locked());
        assert_eq!(raps.last(), keys.last());
    }

    #[test]
    fn a_gap_in_offsets_resyncs() {
        let (s, keys) = stream(2);
        let mut scanner = TsScanner::new();
        let mut raps = Vec::new();
        scanner.scan(0, &s[..100], &mut raps);
        // The source reconnects: the next bytes are a new stream at a new offset.
        scanner.scan(10_000, &s, &mut raps);
        assert_eq!(raps, keys.iter().map(|k| k + 10_000).collect::<Vec<_>>());
    }

    #[test]
    fn random_bytes_do_not_lock_for_long() {
        let noise: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (raps, scanner) = scan_all(&noise, &[7, 500, 3333]);
        assert!(raps.is_empty());
        assert!(scanner.psi().is_none());
    }

    #[test]
    fn content_types() {
        for ct in [
            "video/mp2t",
            "video/MP2T",
            "video/mpeg-ts",
            "video/x-mpegts",
            "application/x-mpegts; charset=x",
            " video/MP2T ",
        ] {
            assert!(is_ts_content_type(ct), "{ct}");
        }
        for ct in [
            "audio/mpeg",
            "video/mp4",
            "mp2t",
            "",
            "application/octet-stream",
        ] {
            assert!(!is_ts_content_type(ct), "{ct}");
        }
    }

    #[test]
    fn sniffing() {
        let (s, _) = stream(1);
        assert!(looks_like_ts(&s));
        assert!(looks_like_ts(&s[..189]));
        assert!(!looks_like_ts(&s[..188]));
        assert!(!looks_like_ts(&s[1..]));
        assert!(!looks_like_ts(b"ID3\x04\x00"));
    }

    proptest! {
        /// Scanning in any pieces finds exactly what scanning in one piece finds.
        #[test]
        fn any_pieces_same_raps(gops in 1usize..5,
                                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20)) {
            let (s, keys) = stream(gops);
            let ends: Vec<usize> = cuts.iter().map(|c| c.index(s.len() + 1)).collect();
            let (raps, scanner) = scan_all(&s, &ends);
            prop_assert_eq!(raps, keys);
            prop_assert!(scanner.psi().is_some());
            prop_assert!(scanner.pending.len() < TS_PACKET);
        }

        /// Arbitrary bytes (with sync bytes sprinkled in) never panic, RAPs are ascending, in
        /// range and split-invariant, and the carried state stays bounded.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(
                               prop_oneof![Just(SYNC), any::<u8>()], 0..3000),
                           cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10)) {
            let (whole, _) = scan_all(&bytes, &[]);
            let ends: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            let (split, scanner) = scan_all(&bytes, &ends);
            prop_assert!(whole.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(whole.iter().all(|&r| r as usize + TS_PACKET <= bytes.len()));
            prop_assert_eq!(split, whole);
            prop_assert!(scanner.pending.len() <= 2 * TS_PACKET);
        }
    }
}
