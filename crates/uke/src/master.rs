//! The レセプト電算処理システム用傷病名マスター (27,437 codes with names), embedded from
//! reference/code-masters/receipt_disease_master_masterB.csv and indexed on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

const CSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../reference/code-masters/receipt_disease_master_masterB.csv"
));

/// The FHIR system of these codes (JP Core).
pub const SYSTEM: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterB-disease";

/// The code of a disease written as free text (未コード化傷病名).
pub const UNCODED: &str = "0000999";

fn index() -> &'static HashMap<&'static str, &'static str> {
    static INDEX: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    INDEX.get_or_init(|| CSV.lines().skip(1).filter_map(|l| l.split_once(',')).collect())
}

/// The name of a 7-digit レセ電傷病名コード, if the master has it.
pub fn disease_name(code: &str) -> Option<&'static str> {
    index().get(code).copied()
}

/// How many codes the master holds.
pub fn len() -> usize {
    index().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_master_is_there() {
        assert_eq!(len(), 27_437);
        assert_eq!(disease_name("8848176"), Some("１１β－水酸化酵素欠損症"));
        assert_eq!(disease_name("9999999"), None);
    }
}
