//! The integration tests of `musubi-web`, in one binary: each file used to be its own
//! test binary, and linking the whole service once per file cost minutes and gigabytes.

mod accounts;
mod browser;
mod common;
mod hygiene;
mod pages;
mod referrals;
