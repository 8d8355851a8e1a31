#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ioc_fuzz_targets::query_params(data));
