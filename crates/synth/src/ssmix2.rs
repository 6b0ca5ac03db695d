//! SS-MIX2 standardized storage.
