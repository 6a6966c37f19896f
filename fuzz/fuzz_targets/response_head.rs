//! `parse_response_head` on arbitrary bytes: it never panics, and what it answers is consistent
//! (the head alone parses the same, every shorter prefix asks for more).
#![no_main]

use dataplane::http::BodyFraming;
use dataplane::response_head::{MAX_RESPONSE_HEAD, parse_response_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_response_head(data) {
        Ok(Some(head)) => {
            assert!(head.len <= data.len() && head.len <= MAX_RESPONSE_HEAD);
            if (100..200).contains(&head.status) {
                assert_eq!(head.body, BodyFraming::None);
            }
            // Nothing after the head was looked at.
            assert_eq!(
                parse_response_head(&data[..head.len]),
                Ok(Some(head.clone()))
            );
            for cut in [0, head.len / 2, head.len - 1] {
                assert_eq!(
                    parse_response_head(&data[..cut]),
                    Ok(None),
                    "prefix of {cut}"
                );
            }
        }
        Ok(None) => assert!(data.len() < MAX_RESPONSE_HEAD),
        Err(_) => {}
    }
});
