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
