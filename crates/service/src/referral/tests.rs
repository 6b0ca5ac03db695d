//! Referral exchange tests (service level).
