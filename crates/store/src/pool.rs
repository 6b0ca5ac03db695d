//! A small blocking connection pool: connections are made on demand up to a maximum, handed
//! out one at a time, and dropped instead of returned when they broke.

use std::sync::{Condvar, Mutex};

use crate::StoreError;
use crate::sql::Conn;

type Factory = Box<dyn Fn() -> Result<Box<dyn Conn>, StoreError> + Send + Sync>;

/// The pool.
pub struct Pool {
    idle: Mutex<(Vec<Box<dyn Conn>>, usize)>,
    available: Condvar,
    factory: Factory,
    max: usize,
}

impl Pool {
    /// A pool of at most `max` connections made by `factory`.
    pub fn new(max: usize, factory: Factory) -> Self {
        Pool { idle: Mutex::new((Vec::new(), 0)), available: Condvar::new(), factory, max: max.max(1) }
    }

    /// Runs `f` with a connection. If `f` fails with a backend error the connection is dropped
    /// (it may be broken) and a new one is made next time.
    pub fn with<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.take()?;
        let result = f(conn.as_mut());
        match &result {
            Err(StoreError::Backend { .. }) => self.discard(),
            _ => self.give_back(conn),
        }
        result
    }

    fn take(&self) -> Result<Box<dyn Conn>, StoreError> {
        let mut guard = self.idle.lock().map_err(|_| StoreError::Poisoned)?;
        loop {
            if let Some(c) = guard.0.pop() {
                return Ok(c);
            }
            if guard.1 < self.max {
                guard.1 += 1;
                drop(guard);
                return match (self.factory)() {
                    Ok(c) => Ok(c),
                    Err(e) => {
                        self.discard();
                        Err(e)
                    }
                };
            }
            guard = self.available.wait(guard).map_err(|_| StoreError::Poisoned)?;
        }
    }

    fn give_back(&self, c: Box<dyn Conn>) {
        if let Ok(mut g) = self.idle.lock() {
            g.0.push(c);
        }
        self.available.notify_one();
    }

    fn discard(&self) {
        if let Ok(mut g) = self.idle.lock() {
            g.1 = g.1.saturating_sub(1);
        }
        self.available.notify_one();
    }
}
