//! The transparent path's first look at a TLS connection: any bytes, any split into reads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_hub::egress::detect::parse_client_hello;

fuzz_target!(|data: &[u8]| {
    let whole = parse_client_hello(data);
    // A complete ClientHello stays complete (with the same name) when more bytes follow it.
    if let Ok(Some(sni)) = &whole {
        let mut more = data.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
        if let Ok(Some(again)) = parse_client_hello(&more) {
            assert_eq!(&again, sni);
        }
        // A server name, when there is one, is what the policy will parse: never empty.
        if let Some(name) = sni {
            assert!(!name.is_empty());
        }
    }
});
