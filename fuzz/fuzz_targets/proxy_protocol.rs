#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gwcore_proxy::proxy_protocol::__fuzz::read_header(data));
