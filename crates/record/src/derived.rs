//! What readers derive from one stored version, kept beside it.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

/// What a reader (the page model, the emergency summary) derives from one stored version,
/// kept beside the parsed version so it is derived once, not on every page.
///
/// Reading a field of a parsed resource is a hash lookup in a map somewhere in memory; a
/// long history's pages made a hundred thousand of them per request, most missing the CPU
/// cache, and that was most of their time. A reader keeps its own small struct of what it
/// needs here instead, one per type `T`. What it stores must depend on the version's content
/// only (never on the caller, the time or other records): it is shared by every request.
#[derive(Clone, Default)]
pub struct Derived(Arc<Mutex<Vec<Arc<dyn Any + Send + Sync>>>>);

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived")
    }
}

impl Derived {
    /// The reader's `T` of this version: derived by `f` the first time, shared after.
    pub fn get_or_derive<T: Any + Send + Sync>(&self, f: impl FnOnce() -> T) -> Arc<T> {
        // A poisoned lock only means a reader panicked while deriving; the slots stay valid.
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = slots.iter().find_map(|s| Arc::clone(s).downcast::<T>().ok()) {
            return t;
        }
        let t = Arc::new(f());
        slots.push(t.clone());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_data_is_derived_once_per_type() {
        let d = Derived::default();
        let mut calls = 0;
        assert_eq!(
            *d.get_or_derive(|| {
                calls += 1;
                7u32
            }),
            7
        );
        assert_eq!(
            *d.get_or_derive(|| {
                calls += 1;
                8u32
            }),
            7
        );
        assert_eq!(*d.get_or_derive(|| "text".to_owned()), "text");
        assert_eq!(calls, 1);
        // Clones (the cache's and each request's entry) share it.
        assert_eq!(*d.clone().get_or_derive(|| 9u32), 7);
    }
}
