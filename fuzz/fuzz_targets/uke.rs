//! Fuzzes the UKE path: Shift_JIS decoding, record parsing, validation and mapping
//! (`musubi_uke::fuzz_parse` never panics on any bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    musubi_uke::fuzz_parse(data);
});
