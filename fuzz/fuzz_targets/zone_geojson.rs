#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ioc_fuzz_targets::zone_geojson(data));
