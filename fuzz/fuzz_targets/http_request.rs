//! `parse_request` on arbitrary bytes: it never panics, and what it answers is consistent.
#![no_main]

use dataplane::http::{MAX_HEAD, is_stream_name_byte, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(Some(req)) => {
            assert!(req.head_len <= data.len() && req.head_len <= MAX_HEAD);
            assert!(req.route.stream().bytes().all(is_stream_name_byte));
            // The head alone parses to the same request: nothing after it was looked at.
            let head_only = parse_request(&data[..req.head_len]);
            assert_eq!(head_only.as_ref().ok().and_then(|r| r.as_ref()), Some(&req));
            // Any shorter prefix asks for more bytes.
            for cut in [0, req.head_len / 2, req.head_len - 1] {
                assert_eq!(
                    parse_request(&data[..cut]),
                    Ok(None),
                    "prefix of {cut} bytes"
                );
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEAD),
        Err(e) => {
            // The answer is one well-formed response whose length covers its body exactly.
            let (code, _) = e.status();
            assert!((400..600).contains(&code));
            let answer = String::from_utf8(e.response()).expect("answers are UTF-8");
            assert!(answer.starts_with(&format!("HTTP/1.1 {code} ")));
            let (head, body) = answer.split_once("\r\n\r\n").expect("end of head");
            // No bare CR or LF inside a line: nothing from the request can inject a header.
            assert!(head.split("\r\n").all(|l| !l.contains(['\r', '\n'])));
            let length: usize = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("Content-Length")
                .parse()
                .expect("decimal length");
            assert_eq!(length, body.len());
        }
    }
});
