#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gwcore::__fuzz::table_vs_reference(data));
