//! Control protocol: round trips, framing, hostile bytes, hello check.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use control::protocol::*;
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9./_-]{0,12}"
}

fn pid() -> impl Strategy<Value = ProxyId> {
    any::<u32>().prop_map(ProxyId)
}

fn source() -> impl Strategy<Value = SourceInfo> {
    (name(), name(), any::<u64>()).prop_map(|(source, content_type, bitrate_bps)| SourceInfo {
        source,
        content_type,
        bitrate_bps,
    })
}

fn peer() -> impl Strategy<Value = Peer> {
    (pid(), addr()).prop_map(|(id, addr)| Peer { id, addr })
}

fn child() -> impl Strategy<Value = Child> {
    prop_oneof![Just(Child::Viewer), pid().prop_map(Child::Proxy)]
}

fn rtts() -> impl Strategy<Value = Vec<Rtt>> {
    prop::collection::vec(
        (pid(), any::<u32>()).prop_map(|(peer, micros)| Rtt { peer, micros }),
        0..4,
    )
}

fn stream_state() -> impl Strategy<Value = StreamState> {
    (
        name(),
        prop::option::of(source()),
        any::<u32>(),
        prop::collection::vec(pid(), 0..3),
        prop::collection::vec(pid(), 0..3),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(stream, source, tier, parents, children, viewers, accepting)| StreamState {
                stream,
                source,
                tier,
                parents,
                children,
                viewers,
                accepting,
            },
        )
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u32>(),
        name(),
        pid(),
        name(),
        addr(),
        prop::option::of(name()),
        (any::<u32>(), any::<u64>()),
        prop::collection::vec(stream_state(), 0..3),
        (rtts(), any::<bool>()),
    )
        .prop_map(
            |(version, token, proxy, name, data_addr, region, (c, b), streams, (rtts, decides))| {
                Hello {
                    version,
                    token,
                    proxy,
                    name,
                    data_addr,
                    region,
                    capacity: Capacity {
                        connections: c,
                        bits_per_sec: b,
                    },
                    streams,
                    rtts,
                    decides,
                }
            },
        )
}

fn load() -> impl Strategy<Value = StreamLoad> {
    (
        name(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        -1e6f32..1e6,
        -1e6f32..1e6,
    )
        .prop_map(
            |(stream, viewers, child_proxies, bits_per_sec, login_rate, logoff_rate)| StreamLoad {
                stream,
                viewers,
                child_proxies,
                bits_per_sec,
                login_rate,
                logoff_rate,
            },
        )
}

fn proxy_msg() -> impl Strategy<Value = ProxyMsg> {
    prop_oneof![
        hello().prop_map(ProxyMsg::Hello),
        (
            prop::collection::vec(load(), 0..4),
            any::<u32>(),
            any::<u64>(),
            rtts()
        )
            .prop_map(
                |(streams, connections, bits_per_sec, rtts)| ProxyMsg::Heartbeat {
                    streams,
                    connections,
                    bits_per_sec,
                    rtts
                }
            ),
        (name(), source()).prop_map(|(stream, source)| ProxyMsg::StreamAnnounce { stream, source }),
        name().prop_map(|stream| ProxyMsg::StreamEnd { stream }),
        (name(), child()).prop_map(|(stream, child)| ProxyMsg::Login { stream, child }),
        (name(), child()).prop_map(|(stream, child)| ProxyMsg::Logoff { stream, child }),
        name().prop_map(|stream| ProxyMsg::Distribute { stream }),
        name().prop_map(|stream| ProxyMsg::Consolidate { stream }),
        (name(), pid()).prop_map(|(stream, parent)| ProxyMsg::LinkDowngrade { stream, parent }),
    ]
}

fn refusal() -> impl Strategy<Value = Refusal> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(ours, theirs)| Refusal::VersionMismatch { ours, theirs }),
        Just(Refusal::BadToken),
        Just(Refusal::NotHello),
        pid().prop_map(Refusal::AlreadyConnected),
        name().prop_map(Refusal::Other),
    ]
}

fn pnc_msg() -> impl Strategy<Value = PncMsg> {
    let peers = || prop::collection::vec(peer(), 0..4);
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(version, heartbeat_ms)| PncMsg::Welcome {
            version,
            heartbeat_ms
        }),
        refusal().prop_map(PncMsg::Refused),
        (name(), source(), any::<u32>(), peers(), any::<bool>()).prop_map(
            |(stream, source, tier, parents, accepting)| {
                PncMsg::Activate {
                    stream,
                    source,
                    tier,
                    parents,
                    accepting,
                }
            }
        ),
        (name(), peers()).prop_map(|(stream, parents)| PncMsg::SwitchToParent { stream, parents }),
        (name(), peers()).prop_map(|(stream, redirect_to)| PncMsg::StopAccepting {
            stream,
            redirect_to
        }),
        name().prop_map(|stream| PncMsg::StartAccepting { stream }),
        (name(), peer()).prop_map(|(stream, to)| PncMsg::RedirectChildren { stream, to }),
        name().prop_map(|stream| PncMsg::Deactivate { stream }),
        (name(), peers()).prop_map(|(stream, peers)| PncMsg::MonitorList { stream, peers }),
    ]
}

proptest! {
    #[test]
    fn proxy_messages_round_trip_through_frames(msgs in prop::collection::vec(proxy_msg(), 1..6), chunk in 1usize..64) {
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode_frame(m).unwrap());
        }
        // One shot.
        let mut at = 0;
        for m in &msgs {
            let (back, used) = decode_frame::<ProxyMsg>(&bytes[at..]).unwrap().unwrap();
            prop_assert_eq!(&back, m);
            at += used;
        }
        prop_assert_eq!(at, bytes.len());
        // Streamed in chunks.
        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        for c in bytes.chunks(chunk) {
            reader.push(c);
            while let Some(m) = reader.next_msg::<ProxyMsg>().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn pnc_messages_round_trip_through_frames(msgs in prop::collection::vec(pnc_msg(), 1..6), chunk in 1usize..64) {
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode_frame(m).unwrap());
        }
        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        for c in bytes.chunks(chunk) {
            reader.push(c);
            while let Some(m) = reader.next_msg::<PncMsg>().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn hostile_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_decode(&data);
    }

    #[test]
    fn truncated_frames_ask_for_more(msg in proxy_msg()) {
        let bytes = encode_frame(&msg).unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(decode_frame::<ProxyMsg>(&bytes[..cut]).unwrap().is_none());
        }
    }
}

#[test]
fn oversized_length_is_refused_before_the_payload_arrives() {
    let len = (MAX_FRAME_LEN as u32 + 1).to_le_bytes();
    match decode_frame::<ProxyMsg>(&len) {
        Err(FrameError::TooLong { len, max }) => {
            assert_eq!((len, max), (MAX_FRAME_LEN + 1, MAX_FRAME_LEN))
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    let mut reader = FrameReader::new();
    reader.push(&u32::MAX.to_le_bytes());
    assert!(matches!(
        reader.next_msg::<PncMsg>(),
        Err(FrameError::TooLong { .. })
    ));
}

#[test]
fn empty_garbage_and_trailing_bytes_are_typed_errors() {
    assert!(matches!(
        decode_frame::<ProxyMsg>(&[0, 0, 0, 0]),
        Err(FrameError::Empty)
    ));
    // Variant index 200 does not exist.
    assert!(matches!(
        decode_frame::<ProxyMsg>(&[1, 0, 0, 0, 200]),
        Err(FrameError::Malformed(_))
    ));
    // A string length claiming far more than the frame holds.
    let mut evil = vec![0u8; 4];
    evil.extend([3u8, 253]); // StreamEnd, then a u64 varint length...
    evil.extend(u64::MAX.to_le_bytes());
    let n = (evil.len() - 4) as u32;
    evil[..4].copy_from_slice(&n.to_le_bytes());
    assert!(matches!(
        decode_frame::<ProxyMsg>(&evil),
        Err(FrameError::Malformed(_))
    ));
    // A valid message followed by a junk byte inside the same frame.
    let mut f = encode_frame(&ProxyMsg::StreamEnd { stream: "a".into() }).unwrap();
    f.push(7);
    let n = (f.len() - 4) as u32;
    f[..4].copy_from_slice(&n.to_le_bytes());
    assert!(matches!(
        decode_frame::<ProxyMsg>(&f),
        Err(FrameError::TrailingBytes { extra: 1 })
    ));
}

#[test]
fn hello_checks_version_and_token() {
    let mut h = Hello {
        version: PROTOCOL_VERSION,
        token: "s3cret".into(),
        proxy: ProxyId(11),
        name: "p11".into(),
        data_addr: "127.0.0.1:8080".parse().unwrap(),
        region: None,
        capacity: Capacity {
            connections: 3,
            bits_per_sec: 1_000_000,
        },
        streams: vec![],
        rtts: vec![],
        decides: false,
    };
    assert_eq!(check_hello(&h, "s3cret"), Ok(()));
    assert_eq!(check_hello(&h, "s3cres"), Err(Refusal::BadToken));
    assert_eq!(check_hello(&h, "s3cret2"), Err(Refusal::BadToken));
    assert_eq!(check_hello(&h, ""), Err(Refusal::BadToken));
    h.version = 99;
    assert_eq!(
        check_hello(&h, "s3cret"),
        Err(Refusal::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: 99
        })
    );
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"a", b""));
}

#[test]
fn too_large_messages_are_not_encoded() {
    let msg = ProxyMsg::StreamEnd {
        stream: "x".repeat(MAX_FRAME_LEN + 1),
    };
    assert!(matches!(
        encode_frame(&msg),
        Err(EncodeError::TooLong { .. }) | Err(EncodeError::Bincode(_))
    ));
}
