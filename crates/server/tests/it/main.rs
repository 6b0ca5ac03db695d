//! The integration tests of `musubi-server`, in one binary: each file used to be its own
//! test binary, and linking the whole service once per file cost minutes and gigabytes.

mod api;
mod attacks;
mod authz;
mod common;
mod hygiene;
mod login_attacks;
mod mpi;
mod mpi_attacks;
mod people;
mod referral_bundle;
mod referral_document_person;
mod referral_withdraw;
mod referrals;
mod tls;
