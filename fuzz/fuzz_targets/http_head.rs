//! The forward and CONNECT paths' request-head parser and framing check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_hub::egress::detect::parse_head;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, len))) = parse_head(data) {
        assert!(len <= data.len());
        let framing = head.check_framing();
        // What check_framing accepts has at most one Host and one Content-Length.
        if framing.is_ok() {
            let count = |n: &str| {
                head.headers
                    .iter()
                    .filter(|(h, _)| h.eq_ignore_ascii_case(n))
                    .count()
            };
            assert!(count("host") <= 1 && count("content-length") <= 1);
            assert!(!(count("content-length") == 1 && count("transfer-encoding") >= 1));
        }
        // Parsing is a function of the head alone: the same bytes parse the same way.
        let again = parse_head(&data[..len]).ok().flatten();
        assert_eq!(
            again.map(|(h, n)| (h.target, n)),
            Some((head.target.clone(), len))
        );
    }
});
