//! The fuzz targets' seed inputs (`fuzz/seeds/<target>/`, which `scripts/fuzz.sh` hands to
//! libFuzzer besides the growing `fuzz/corpus/<target>/`): valid request heads, chunked bodies,
//! VAN frames (for the buffering decoder and the streaming reader), a parent's response heads,
//! control messages of both directions and MPEG-TS with PAT, PMT and keyframe PES,
//! built here with the real encoders so that a short fuzzing run starts deep in each parser.
//! Each seed must be accepted whole by its decoder, and the committed files must be exactly
//! these; `VAN_WRITE_FUZZ_SEEDS=1 cargo test -p van-e2e --test fuzz_seeds` rewrites them.
//!
//! Every target but `http_request` reads its first input byte as the seed of its read sizes.

use control::protocol::{
    Capacity, Child, Hello, PROTOCOL_VERSION, PncMsg, ProxyId, ProxyMsg, Refusal, Rtt, SourceInfo,
    StreamLoad, decode_frame,
};
use dataplane::frame::{FrameDecoder, FrameKind, encode_frame};
use dataplane::mpegts::{TS_PACKET, TsScanner};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The seed byte in front of the inputs of the targets that take one.
const SPLIT_SEED: u8 = 0x5c;

fn with_split_seed(wire: &[u8]) -> Vec<u8> {
    [&[SPLIT_SEED], wire].concat()
}

fn http_request_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let auth = "Authorization: Basic c291cmNlOnB3LWUyZQ==\r\n";
    [
        (
            "get_live",
            "GET /live/demo HTTP/1.1\r\nHost: relay:8080\r\nUser-Agent: VLC/3.0\r\nAccept: */*\r\nIcy-MetaData: 1\r\n\r\n".to_string(),
        ),
        (
            "get_van_from",
            "GET /van/demo?from=4242 HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer van-token\r\n\r\n".to_string(),
        ),
        ("head_live_http10", "HEAD /live/demo HTTP/1.0\r\n\r\n".to_string()),
        (
            "put_chunked",
            format!("PUT /live/demo HTTP/1.1\r\nHost: relay\r\n{auth}Content-Type: video/mp2t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"),
        ),
        (
            "put_length",
            format!("PUT /live/demo HTTP/1.1\r\n{auth}Content-Type: audio/mpeg\r\nContent-Length: 1048576\r\n\r\n"),
        ),
        (
            "source_http10",
            format!("SOURCE /live/demo HTTP/1.0\r\n{auth}Content-Type: audio/mpeg\r\nIce-Public: 0\r\nIce-Name: test\r\n\r\n"),
        ),
        (
            "source_ice10",
            format!("SOURCE /live/demo ICE/1.0\r\n{auth}Content-Type: audio/ogg\r\n\r\n"),
        ),
    ]
    .into_iter()
    .map(|(name, head)| (name, head.into_bytes()))
    .collect()
}

fn chunked_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = b"1000\r\n".to_vec();
    big.extend((0..4096u32).map(|i| (i % 251) as u8));
    big.extend_from_slice(b"\r\n1\r\nx\r\n0\r\n\r\n");
    vec![
        ("one_chunk", b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        (
            "extensions_and_trailers",
            b"4;name=value\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n"
                .to_vec(),
        ),
        ("upper_and_lower_hex", b"a\r\n0123456789\r\nB\r\n0123456789a\r\n0\r\n\r\n".to_vec()),
        ("large_chunk", big),
    ]
    .into_iter()
    .map(|(name, wire)| (name, with_split_seed(&wire)))
    .collect()
}

fn van_frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut stream = Vec::new();
    for seq in 100..104u64 {
        stream.extend(encode_frame(
            FrameKind::Data,
            seq,
            1_700_000_000_000_000 + seq,
            &[seq as u8; 300],
        ));
    }
    stream.extend(encode_frame(
        FrameKind::Heartbeat,
        104,
        1_700_000_000_100_000,
        &[],
    ));
    stream.extend(encode_frame(
        FrameKind::End,
        104,
        1_700_000_000_200_000,
        b"stream ended",
    ));
    let redirect = [
        encode_frame(FrameKind::Data, 7, 1, b"payload"),
        encode_frame(
            FrameKind::Redirect,
            8,
            2,
            b"http://10.0.0.2:8080/van/demo?from=8",
        ),
    ]
    .concat();
    vec![
        ("data_heartbeat_end", stream),
        ("redirect", redirect),
        ("one_data_frame", encode_frame(FrameKind::Data, 0, 0, b"x")),
    ]
    .into_iter()
    .map(|(name, wire)| (name, with_split_seed(&wire)))
    .collect()
}

/// A parent's answers to `GET /van/...`: the heads a child proxy parses before its frames.
fn response_head_seeds() -> Vec<(&'static str, Vec<u8>)> {
    [
        (
            "van_blocks_200",
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-van-blocks\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        ),
        (
            "redirect_307",
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://10.0.0.2:8080/van/demo?from=8\r\n\
             Content-Length: 0\r\n\r\n",
        ),
        (
            "refused_503",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
             Content-Length: 21\r\nRetry-After: 1\r\n\r\n",
        ),
        ("continue_100", "HTTP/1.1 100 Continue\r\n\r\n"),
        (
            "chunked_401",
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
        ),
    ]
    .into_iter()
    .map(|(name, head)| (name, head.as_bytes().to_vec()))
    .collect()
}

fn control_frames<M: serde::Serialize>(msgs: &[M]) -> Vec<u8> {
    msgs.iter()
        .flat_map(|m| control::protocol::encode_frame(m).expect("encodes"))
        .collect()
}

fn control_message_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let peer = |id: u32| control::protocol::Peer {
        id: ProxyId(id),
        addr: format!("10.0.0.{id}:8080").parse().expect("address"),
    };
    let source = SourceInfo {
        source: "www.example.org".into(),
        content_type: "video/mp2t".into(),
        bitrate_bps: 4_000_000,
    };
    let hello = ProxyMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        token: "s3cret-token".into(),
        proxy: ProxyId(21),
        name: "p21".into(),
        data_addr: "127.0.0.21:8080".parse().expect("address"),
        region: Some("eu".into()),
        capacity: Capacity {
            connections: 1000,
            bits_per_sec: 10_000_000_000,
        },
        streams: Vec::new(),
        rtts: vec![Rtt {
            peer: ProxyId(11),
            micros: 1500,
        }],
        decides: true,
    });
    let proxy = control_frames(&[
        hello,
        ProxyMsg::StreamAnnounce {
            stream: "demo".into(),
            source: source.clone(),
        },
        ProxyMsg::Heartbeat {
            streams: vec![StreamLoad {
                stream: "demo".into(),
                viewers: 250,
                child_proxies: 2,
                bits_per_sec: 1_000_000_000,
                login_rate: 3.5,
                logoff_rate: 0.25,
            }],
            connections: 252,
            bits_per_sec: 1_000_000_000,
            rtts: Vec::new(),
        },
        ProxyMsg::Login {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(31)),
        },
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Viewer,
        },
        ProxyMsg::Distribute {
            stream: "demo".into(),
        },
        ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(11),
        },
        ProxyMsg::StreamEnd {
            stream: "demo".into(),
        },
    ]);
    let pnc = control_frames(&[
        PncMsg::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_ms: 1000,
        },
        PncMsg::Activate {
            stream: "demo".into(),
            source,
            tier: 2,
            parents: vec![peer(11), peer(12)],
            accepting: true,
        },
        PncMsg::SwitchToParent {
            stream: "demo".into(),
            parents: vec![peer(22)],
        },
        PncMsg::StopAccepting {
            stream: "demo".into(),
            redirect_to: vec![peer(23)],
        },
        PncMsg::RedirectChildren {
            stream: "demo".into(),
            to: peer(24),
        },
        PncMsg::MonitorList {
            stream: "demo".into(),
            peers: vec![peer(11)],
        },
        PncMsg::Deactivate {
            stream: "demo".into(),
        },
    ]);
    let refused = control_frames(&[PncMsg::Refused(Refusal::VersionMismatch {
        ours: PROTOCOL_VERSION,
        theirs: 99,
    })]);
    vec![
        ("proxy_session", proxy),
        ("pnc_orders", pnc),
        ("pnc_refused", refused),
    ]
    .into_iter()
    .map(|(name, wire)| (name, with_split_seed(&wire)))
    .collect()
}

/// A TS packet: PID, payload_unit_start, adaptation field flags, payload stuffed to 188 bytes.
fn ts_packet(pid: u16, unit_start: bool, af_flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![
        0x47,
        (u8::from(unit_start) << 6) | (pid >> 8) as u8,
        pid as u8,
    ];
    let free = TS_PACKET - 4 - payload.len();
    if free == 0 {
        p.push(0x10);
    } else {
        p.push(0x30);
        p.push((free - 1) as u8);
        if free > 1 {
            p.push(af_flags);
            p.resize(4 + free, 0xff);
        }
    }
    p.extend_from_slice(payload);
    assert_eq!(p.len(), TS_PACKET);
    p
}

/// A PSI section after pointer_field 0, with its CRC-32 (MPEG-2: polynomial 0x04C11DB7).
fn section(body: &[u8]) -> Vec<u8> {
    let mut crc = 0xffff_ffffu32;
    for &b in body {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    [&[0u8], body, &crc.to_be_bytes()].concat()
}

const PMT_PID: u16 = 0x1000;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;

fn pat() -> Vec<u8> {
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
        0xe0 | (PMT_PID >> 8) as u8,
        PMT_PID as u8,
    ];
    ts_packet(0, true, 0, &section(&body))
}

fn pmt(streams: &[(u8, u16)]) -> Vec<u8> {
    let pcr = streams.first().map_or(0x1fff, |s| s.1);
    let mut body = vec![
        0x02,
        0xb0,
        0,
        0x00,
        0x01,
        0xc1,
        0x00,
        0x00,
        0xe0 | (pcr >> 8) as u8,
        pcr as u8,
        0xf0,
        0x00,
    ];
    for &(t, pid) in streams {
        body.extend_from_slice(&[t, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0x00]);
    }
    body[2] = (body.len() - 3 + 4) as u8;
    ts_packet(PMT_PID, true, 0, &section(&body))
}

/// A video PES header (with a PTS) and NAL units or start codes beginning with `units`.
fn pes(stream_id: u8, units: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
    for u in units {
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(u);
    }
    p
}

/// PAT, PMT, then two pictures of `stream_type`, the first a keyframe, and audio between.
fn ts_program(stream_type: u8, key: &[&[u8]], other: &[&[u8]]) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..2 {
        s.extend(pat());
        s.extend(pmt(&[(stream_type, VIDEO), (0x0f, AUDIO)]));
        s.extend(ts_packet(VIDEO, true, 0x50, &pes(0xe0, key)));
        s.extend(ts_packet(VIDEO, false, 0, &[0x55; 184]));
        s.extend(ts_packet(
            AUDIO,
            true,
            0x40,
            &[0, 0, 1, 0xc0, 0, 0, 0x80, 0, 0],
        ));
        s.extend(ts_packet(VIDEO, true, 0, &pes(0xe0, other)));
        s.extend(ts_packet(0x1fff, false, 0, &[0xff; 184]));
    }
    s
}

fn mpegts_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // H.264: AUD, SPS, PPS, IDR / AUD, non-IDR slice. HEVC: VPS, SPS, IDR_W_RADL / TRAIL_R.
    // MPEG-2: sequence header, picture / picture.
    let h264 = ts_program(
        0x1b,
        &[
            &[0x09, 0xf0],
            &[0x67, 0x42, 0xc0],
            &[0x68, 0xce],
            &[0x65, 0x88, 0x84],
        ],
        &[&[0x09, 0xf0], &[0x41, 0x9a]],
    );
    let hevc = ts_program(
        0x24,
        &[&[0x40, 0x01], &[0x42, 0x01], &[0x26, 0x01, 0xaf]],
        &[&[0x02, 0x01, 0xd0]],
    );
    let mpeg2 = ts_program(
        0x02,
        &[&[0xb3, 0x14, 0x00], &[0x00, 0x00]],
        &[&[0x00, 0x01]],
    );
    let mut audio_only = Vec::new();
    for _ in 0..3 {
        audio_only.extend(pat());
        audio_only.extend(pmt(&[(0x0f, AUDIO)]));
        audio_only.extend(ts_packet(
            AUDIO,
            true,
            0x40,
            &[0, 0, 1, 0xc0, 0, 0, 0x80, 0, 0],
        ));
    }
    // Joined mid-packet: 100 bytes of a packet before the first sync byte.
    let joined = [&h264[88..TS_PACKET], &h264[..]].concat();
    vec![
        ("h264", h264),
        ("hevc", hevc),
        ("mpeg2", mpeg2),
        ("audio_only", audio_only),
        ("h264_joined_mid_packet", joined),
    ]
    .into_iter()
    .map(|(name, wire)| (name, with_split_seed(&wire)))
    .collect()
}

/// Every target's seeds.
fn seeds() -> BTreeMap<&'static str, Vec<(&'static str, Vec<u8>)>> {
    BTreeMap::from([
        ("http_request", http_request_seeds()),
        ("chunked", chunked_seeds()),
        ("van_frame", van_frame_seeds()),
        // The streaming reader takes the same input as the buffering decoder's target.
        ("frame_reader", van_frame_seeds()),
        ("response_head", response_head_seeds()),
        ("control_message", control_message_seeds()),
        ("mpegts", mpegts_seeds()),
    ])
}

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// Every control frame in `wire` decodes, as `M`, and nothing is left over.
fn all_control_frames<M: serde::de::DeserializeOwned>(mut wire: &[u8]) -> bool {
    let mut n = 0;
    while !wire.is_empty() {
        match decode_frame::<M>(wire) {
            Ok(Some((_, used))) => wire = &wire[used..],
            _ => return false,
        }
        n += 1;
    }
    n > 0
}

#[test]
fn every_seed_is_accepted_whole_by_its_decoder() {
    for (name, data) in http_request_seeds() {
        let req = dataplane::http::parse_request(&data);
        assert!(
            matches!(&req, Ok(Some(r)) if r.head_len == data.len()),
            "http_request/{name}: {req:?}"
        );
    }
    for (name, data) in chunked_seeds() {
        let (payload, outcome, ended) =
            dataplane::chunked::decode_in_reads(&data[1..], &[data.len()]);
        assert!(
            outcome.is_ok() && ended && !payload.is_empty(),
            "chunked/{name}"
        );
    }
    for (name, data) in van_frame_seeds() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&data[1..]);
        let mut frames = 0;
        while decoder
            .next_frame()
            .unwrap_or_else(|e| panic!("van_frame/{name}: {e}"))
            .is_some()
        {
            frames += 1;
        }
        assert!(frames > 0 && decoder.buffered() == 0, "van_frame/{name}");
    }
    for (name, data) in van_frame_seeds() {
        let (frames, error) = dataplane::frame_reader::read_events(&data[1..], &[]);
        assert!(!frames.is_empty() && error.is_none(), "frame_reader/{name}");
    }
    for (name, data) in response_head_seeds() {
        let head = dataplane::response_head::parse_response_head(&data);
        assert!(
            matches!(&head, Ok(Some(h)) if h.len == data.len()),
            "response_head/{name}: {head:?}"
        );
    }
    for (name, data) in control_message_seeds() {
        let wire = &data[1..];
        assert!(
            all_control_frames::<ProxyMsg>(wire) || all_control_frames::<PncMsg>(wire),
            "control_message/{name}"
        );
    }
    for (name, data) in mpegts_seeds() {
        let mut scanner = TsScanner::new();
        let mut raps = Vec::new();
        scanner.scan(0, &data[1..], &mut raps);
        assert!(
            scanner.psi().is_some() && raps.len() >= 2,
            "mpegts/{name}: PSI {:?}, keyframes at {raps:?}",
            scanner.psi().is_some()
        );
    }
}

#[test]
fn the_committed_seeds_are_these() {
    let write = std::env::var_os("VAN_WRITE_FUZZ_SEEDS").is_some();
    for (target, seeds) in seeds() {
        let dir = seeds_dir(target);
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the seeds directory");
        }
        for (name, data) in &seeds {
            let path = dir.join(name);
            if write {
                std::fs::write(&path, data).expect("write a seed");
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (VAN_WRITE_FUZZ_SEEDS=1 writes it)", path.display())
            });
            assert!(
                &committed == data,
                "{} differs from its definition here (VAN_WRITE_FUZZ_SEEDS=1 rewrites it)",
                path.display()
            );
        }
        let files = std::fs::read_dir(&dir).expect("seeds directory").count();
        assert_eq!(files, seeds.len(), "stray files in {}", dir.display());
    }
}
