//! Helpers shared by the fuzz targets.

/// Splits `len` bytes into reads: the end offsets of each piece, ascending, the last being
/// `len`. `seed` picks the piece sizes (1 to 64 bytes, reproducibly), so that the fuzzer
/// explores how a decoder behaves when its input arrives in arbitrary pieces.
pub fn read_ends(seed: u8, len: usize) -> Vec<usize> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut ends = Vec::new();
    let mut at = 0;
    while at < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        at = (at + 1 + (state % 64) as usize).min(len);
        ends.push(at);
    }
    ends
}

/// What a decoder made of a byte stream: the messages it returned, each re-encoded (so that
/// messages compare by their bytes, even with a NaN inside), then the error that stopped it, if
/// one did, and the bytes left over.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub messages: Vec<Vec<u8>>,
    pub error: Option<String>,
    pub left: usize,
}

/// The control protocol's two decoders over the same bytes must agree: the frame decoder
/// (`decode_frame`, called again after each whole frame on the whole input) and the streaming
/// reader (`FrameReader`, fed the input in the reads `ends` gives, popping messages after each).
/// Also, a message either decodes re-encodes and decodes again. Panics when they differ.
pub fn control_decoders_agree<M>(wire: &[u8], ends: &[usize])
where
    M: serde::de::DeserializeOwned + serde::Serialize,
{
    use control::protocol::{FrameReader, decode_frame, encode_frame};
    let reencode = |m: &M| encode_frame(m).expect("a decoded message re-encodes");

    let mut whole = Decoded {
        messages: Vec::new(),
        error: None,
        left: 0,
    };
    let mut at = 0;
    loop {
        match decode_frame::<M>(&wire[at..]) {
            Ok(Some((msg, used))) => {
                assert!(used > 0 && at + used <= wire.len());
                at += used;
                let again = reencode(&msg);
                let back = decode_frame::<M>(&again).expect("a re-encoded message decodes");
                assert!(matches!(back, Some((_, n)) if n == again.len()));
                whole.messages.push(again);
            }
            Ok(None) => break,
            Err(e) => {
                whole.error = Some(e.to_string());
                break;
            }
        }
    }
    whole.left = wire.len() - at;

    let mut streamed = Decoded {
        messages: Vec::new(),
        error: None,
        left: 0,
    };
    let mut reader = FrameReader::new();
    let mut start = 0;
    'reads: for &end in ends {
        reader.push(&wire[start..end]);
        start = end;
        loop {
            match reader.next_msg::<M>() {
                Ok(Some(msg)) => streamed.messages.push(reencode(&msg)),
                Ok(None) => break,
                Err(e) => {
                    streamed.error = Some(e.to_string());
                    break 'reads;
                }
            }
        }
    }
    streamed.left = if streamed.error.is_some() {
        // The reader stops at the bad frame, as the frame decoder does.
        reader.buffered() + (wire.len() - start)
    } else {
        reader.buffered()
    };
    assert_eq!(
        streamed, whole,
        "the streaming reader and the frame decoder disagree"
    );
}
