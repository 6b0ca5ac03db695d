//! SS-MIX2 standardized storage: path rules, ISO-2022-JP decoding, HL7 v2.5 parsing and mapping to FHIR.
