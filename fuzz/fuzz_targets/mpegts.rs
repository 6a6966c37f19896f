//! `TsScanner` on arbitrary bytes: never panics, reports ascending offsets of whole packets
//! within the input, the same ones whatever the read sizes.
#![no_main]

use dataplane::mpegts::{TS_PACKET, TsScanner};
use libfuzzer_sys::fuzz_target;
use van_fuzz::read_ends;

fn scan(bytes: &[u8], ends: &[usize]) -> (Vec<u64>, bool) {
    let mut scanner = TsScanner::new();
    let mut raps = Vec::new();
    let mut start = 0;
    for &end in ends {
        scanner.scan(start as u64, &bytes[start..end], &mut raps);
        start = end;
    }
    if let Some(psi) = scanner.psi() {
        assert_eq!(psi.len(), 2 * TS_PACKET);
        assert!(psi[0] == 0x47 && psi[TS_PACKET] == 0x47);
    }
    (raps, scanner.psi().is_some())
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let whole = scan(bytes, &[bytes.len()]);
    assert!(whole.0.windows(2).all(|w| w[0] < w[1]));
    assert!(
        whole
            .0
            .iter()
            .all(|&r| r as usize + TS_PACKET <= bytes.len())
    );
    assert_eq!(scan(bytes, &read_ends(seed, bytes.len())), whole);
});
