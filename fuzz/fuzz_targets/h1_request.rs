#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gwcore_proxy::__fuzz::h1_request(data));
