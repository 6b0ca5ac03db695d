//! The integration tests of `musubi-cli`, in one binary: each file used to be its own
//! test binary, and linking the whole service once per file cost minutes and gigabytes.

mod cli;
mod collect;
mod hygiene;
mod ids_rekey;
mod tls_cli;
