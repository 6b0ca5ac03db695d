//! UKE receipts.
