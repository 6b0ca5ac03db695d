//! Fuzzes FHIR search-parameter parsing: the query string of `GET /fhir/{type}?…` as the routes
//! read it (percent-decoding, then the search parameters: tokens, references, dates with
//! prefixes, strings and their modifiers, `_sort`, `_include`, `_count`, `_offset`; AuditEvent's
//! own parameters), through `musubi_service::parse_search`. The input is `Type?query`; without a
//! known type before `?`, the type is chosen by the input's length. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musubi_fhir::ResourceType;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (rtype, query) = match text.split_once('?') {
        Some((t, q)) => match t.parse::<ResourceType>() {
            Ok(rtype) => (rtype, q),
            Err(_) => (ResourceType::ALL[data.len() % ResourceType::ALL.len()], q),
        },
        None => (ResourceType::ALL[data.len() % ResourceType::ALL.len()], &*text),
    };
    let _ = musubi_service::parse_search(rtype, query);
});
