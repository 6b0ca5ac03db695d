//! The domain model of Musubi: the small, validated types that every stage of the flow shares.
//!
//! Nothing here does I/O. Each type can only hold a valid value: a [`FacilityCode`] is always
//! ten digits with a known prefecture and fee-schedule digit, an [`InsuranceId`] always has the
//! JP-CLINS `保険者番号:記号:番号:枝番` shape, a [`BundleIdentifier`] always matches the national
//! service's rule. Parsing is where invalid input is turned away, with an error that says why.
//!
//! ```
//! use musubi_domain::{FacilityCode, FacilityKind};
//! let code: FacilityCode = "1318814790".parse().unwrap();
//! assert_eq!(code.prefecture(), 13);
//! assert_eq!(code.kind(), FacilityKind::Medical);
//! ```

#![deny(missing_docs)]

pub mod audit;
mod bundle_id;
mod class;
mod facility;
mod flags;
mod insurance;
mod prefecture;
mod profession;
pub mod retention;
pub mod systems;

pub use bundle_id::BundleIdentifier;
pub use class::ResourceClass;
pub use facility::{FacilityCode, FacilityKind};
pub use flags::Flags;
pub use insurance::{InsuranceId, InsurerNumber};
pub use prefecture::{PREFECTURES, prefecture_name, prefecture_number};
pub use profession::Profession;

/// Why a domain value failed to parse. The message is for people (English in logs; the API
/// layer translates the kind into a Japanese OperationOutcome text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A 医療機関コード that is not 10 digits with a valid prefecture and fee-schedule digit.
    #[error("invalid facility code {value:?}: {reason}")]
    FacilityCode {
        /// The rejected input.
        value: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// A 被保険者個人識別子 that does not have the `insurer:symbol:number:branch` form.
    #[error("invalid insurance identifier {value:?}: {reason}")]
    InsuranceId {
        /// The rejected input.
        value: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// A JP-CLINS Bundle identifier that does not match `facility^year^id`.
    #[error("invalid bundle identifier {value:?}: {reason}")]
    BundleIdentifier {
        /// The rejected input.
        value: String,
        /// What rule it broke.
        reason: &'static str,
    },
}

/// Converts full-width ASCII digits and letters (０-９, Ａ-Ｚ, ａ-ｚ) to their half-width forms and
/// leaves everything else alone. Registration desks type both; identifiers must compare equal.
pub fn halfwidth_alnum(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '０'..='９' | 'Ａ'..='Ｚ' | 'ａ'..='ｚ' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            other => other,
        })
        .collect()
}
