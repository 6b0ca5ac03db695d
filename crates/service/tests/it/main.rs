//! The integration tests of `musubi-service`, in one binary: each file used to be its own
//! test binary, and linking the whole service once per file cost minutes and gigabytes.

mod audit_anchors;
mod hygiene;
mod referral_submission;
mod referral_withdraw;
