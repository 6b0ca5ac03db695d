//! The integration tests of `musubi-store`, in one binary: each file used to be its own
//! test binary, and linking the whole service once per file cost minutes and gigabytes.

mod collect_suite;
mod data_dir;
mod pg_tls;
mod referral_suite;
mod scope_sql;
mod suite;
