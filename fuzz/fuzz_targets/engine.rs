#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gwcore_fuzz::engine(data));
