//! Property tests: no input makes the collector panic; escaping round-trips.

use musubi_ssmix2::hl7::{Delimiters, Message, escape, unescape};
use proptest::prelude::*;

const ADT00: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../reference/ssmix2/SSMIX2DataTestingTool/sampleData/999/901/9999013/-/ADT-00/9999013_-_ADT-00_999999999999999_20111220224447339_-_1"
));
const OML11: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../reference/ssmix2/SSMIX2DataTestingTool/sampleData/999/901/9999013/20111220/OML-11/9999013_20111220_OML-11_000000011000354_20111220103059000_01_1"
));

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        musubi_ssmix2::fuzz_parse(&data);
    }

    #[test]
    fn mutated_samples_never_panic(sample in 0usize..2, at in any::<prop::sample::Index>(), bytes in proptest::collection::vec(any::<u8>(), 1..16), cut in any::<prop::sample::Index>()) {
        let src = if sample == 0 { ADT00 } else { OML11 };
        let mut data = src.to_vec();
        let i = at.index(data.len());
        data.splice(i..i, bytes);
        musubi_ssmix2::fuzz_parse(&data);
        let c = cut.index(data.len());
        musubi_ssmix2::fuzz_parse(&data[..c]);
    }

    #[test]
    fn hl7_like_text_never_panics(s in "(MSH\\|\\^~\\\\&\\|)?([A-Z0-9]{0,4}(\\|[\\^~&\\\\A-Za-z0-9患者]{0,12}){0,12}\r){0,8}") {
        if let Ok(m) = Message::parse(&s) {
            for seg in &m.segments {
                for f in 0..15 {
                    let v = seg.get(f);
                    let _ = v.rep(1).comp(2).sub(3).text();
                    let _ = v.text();
                }
            }
        }
    }

    #[test]
    fn escape_round_trips(s in "[|^~&\\\\\na-zA-Z0-9患者カナ]{0,40}") {
        let d = Delimiters::default();
        let e = escape(&s, &d);
        prop_assert!(!e.contains('|') && !e.contains('^') && !e.contains('~') && !e.contains('&'));
        prop_assert_eq!(unescape(&e, &d), s);
    }
}
