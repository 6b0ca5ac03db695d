//! Fuzzes the SS-MIX2 path: ISO-2022-JP decoding, the HL7 v2.5 parser and every mapper
//! (`musubi_ssmix2::fuzz_parse` never panics on any bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    musubi_ssmix2::fuzz_parse(data);
});
