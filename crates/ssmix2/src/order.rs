//! Segment order per message, from the SS-MIX2 data checker's table
//! (reference/ssmix2/SSMIX2DataTestingTool/include/HL7_SEGMENTORDER.json, embedded verbatim).
//!
//! The table's rules are regular expressions over the concatenated three-letter segment names.
//! A message that does not match is still mapped (the segments Musubi understands are found by
//! name), but the first segment that breaks the order is reported so the vendor can fix it.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

const TABLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../reference/ssmix2/SSMIX2DataTestingTool/include/HL7_SEGMENTORDER.json"
));

fn rules() -> &'static HashMap<String, Regex> {
    static RULES: OnceLock<HashMap<String, Regex>> = OnceLock::new();
    RULES.get_or_init(|| {
        let raw: HashMap<String, String> = serde_json::from_str(TABLE).unwrap_or_default();
        raw.into_iter()
            .filter_map(|(k, v)| {
                // The checker matches from the start only; Musubi wants the whole message.
                let body = v.strip_prefix('^').unwrap_or(&v);
                // The checker's OUL^R22 rule requires an NTE after every result OBX; HL7 v2.5
                // makes it optional and repeating ([{NTE}]), and real files have none.
                let fixed;
                let body = if k == "OUL^R22" {
                    fixed = body.replace("(SID)*(NTE))*", "(SID)*(NTE)*)*");
                    fixed.as_str()
                } else {
                    body
                };
                Regex::new(&format!("^(?:{body})$")).ok().map(|r| (k, r))
            })
            .collect()
    })
}

/// The result of checking a message's segment order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCheck {
    /// The order matches the rule.
    Ok,
    /// The table has no rule for this message type.
    NoRule,
    /// The order breaks the rule; the first segment (0-based index) that cannot be placed.
    Broken {
        /// Index of the first segment after the longest valid leading part.
        first_bad: usize,
    },
}

/// Checks `names` (one three-letter name per segment) against the rule for `message_type`
/// (`RDE^O11`).
pub fn check(message_type: &str, names: &[&str]) -> OrderCheck {
    let Some(re) = rules().get(message_type) else { return OrderCheck::NoRule };
    let joined: String = names.concat();
    if re.is_match(&joined) {
        return OrderCheck::Ok;
    }
    // The longest leading run of segments that is itself a complete valid message: the
    // segment after it is the first that does not fit.
    let mut prefix_len = joined.len();
    for k in (1..names.len()).rev() {
        prefix_len -= names[k].len();
        if re.is_match(&joined[..prefix_len]) {
            return OrderCheck::Broken { first_bad: k };
        }
    }
    OrderCheck::Broken { first_bad: 1.min(names.len().saturating_sub(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles() {
        let raw: HashMap<String, String> = serde_json::from_str(TABLE).unwrap();
        assert_eq!(rules().len(), raw.len());
        assert!(rules().contains_key("RDE^O11"));
    }

    #[test]
    fn good_and_bad_orders() {
        assert_eq!(check("RAS^O17", &["MSH", "PID", "PV1", "ORC", "RXA", "RXA", "RXR"]), OrderCheck::Ok);
        assert_eq!(
            check("RAS^O17", &["MSH", "PID", "PV1", "ORC", "RXA", "RXA", "RXR", "OBX", "TQ1", "AL1"]),
            OrderCheck::Broken { first_bad: 8 }
        );
        assert_eq!(check("XYZ^A01", &["MSH"]), OrderCheck::NoRule);
        // Result OBX lines without NTE (the checker's table demands one).
        assert_eq!(check("OUL^R22", &["MSH", "PID", "PV1", "SPM", "OBR", "ORC", "OBX", "OBX"]), OrderCheck::Ok);
    }
}
