//! Values of search parameters shared by the FHIR search (`search.rs`) and the AuditEvent
//! search (`audit_event.rs`): date predicates with their comparison prefixes.

use musubi_fhir::datetime::parse_range;
use musubi_store::{DatePred, DatePrefix};

use crate::ApiError;

/// Parses `[prefix]date` (`ge2024-01-01`).
pub(crate) fn parse_date_pred(name: &str, v: &str) -> Result<DatePred, ApiError> {
    let (prefix, rest) = match v.get(..2) {
        Some(p) if p.bytes().all(|b| b.is_ascii_lowercase()) => {
            let prefix = match p {
                "eq" => DatePrefix::Eq,
                "ne" => DatePrefix::Ne,
                "gt" => DatePrefix::Gt,
                "lt" => DatePrefix::Lt,
                "ge" => DatePrefix::Ge,
                "le" => DatePrefix::Le,
                "sa" => DatePrefix::Sa,
                "eb" => DatePrefix::Eb,
                "ap" => DatePrefix::Ap,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{name} の比較演算子 {p:?} は使えません（eq, ne, gt, lt, ge, le, sa, eb, ap）"
                    )));
                }
            };
            (prefix, &v[2..])
        }
        _ => (DatePrefix::Eq, v),
    };
    let range = parse_range(rest).map_err(|_| {
        ApiError::bad_request(format!(
            "{name} の値 {rest:?} は日付・日時ではありません（例: 2024-05-01, 2024-05-01T09:00:00+09:00）"
        ))
    })?;
    Ok(DatePred { prefix, range })
}
