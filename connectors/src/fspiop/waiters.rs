//! Requests waiting on this node for their asynchronous FSPIOP answers (a
//! `PUT` callback or its error), by whatever the answer names. Used where
//! a caller waits for the scheme's answer before it answers its own client
//! (the oracle's `/participants`, a payee DFSP's `/transactions`); flows
//! never wait like this (their answers are inputs).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The waiters of each key; cloning shares them.
#[derive(Debug)]
pub struct Waiters<K, A> {
    waiting: Arc<Mutex<HashMap<K, Vec<oneshot::Sender<A>>>>>,
}

impl<K, A> Clone for Waiters<K, A> {
    fn clone(&self) -> Self {
        Waiters { waiting: self.waiting.clone() }
    }
}

impl<K, A> Default for Waiters<K, A> {
    fn default() -> Self {
        Waiters { waiting: Arc::default() }
    }
}

impl<K: Eq + Hash, A: Clone> Waiters<K, A> {
    /// Waits for the next answer on `key` (register before sending the
    /// request, so an answer that comes at once is not missed).
    pub fn wait(&self, key: K) -> oneshot::Receiver<A> {
        let (sender, receiver) = oneshot::channel();
        self.lock().entry(key).or_default().push(sender);
        receiver
    }

    /// Hands `answer` to everyone waiting on `key`; answers how many were.
    pub fn answer(&self, key: &K, answer: A) -> usize {
        let waiters = self.lock().remove(key).unwrap_or_default();
        let count = waiters.len();
        for waiter in waiters {
            let _ = waiter.send(answer.clone());
        }
        count
    }

    /// Drops the waiters of `key` that gave up (their receivers dropped).
    pub fn forget(&self, key: &K) {
        let mut waiting = self.lock();
        if let Some(waiters) = waiting.get_mut(key) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                waiting.remove(key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Vec<oneshot::Sender<A>>>> {
        // A panic while holding it cannot leave the map inconsistent.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_reaches_every_waiter_of_its_key_and_no_other() {
        let waiters: Waiters<u32, &str> = Waiters::default();
        let (first, second, other) = (waiters.wait(1), waiters.wait(1), waiters.wait(2));
        assert_eq!(waiters.answer(&1, "yes"), 2);
        assert_eq!((first.await, second.await), (Ok("yes"), Ok("yes")));
        assert_eq!(waiters.answer(&1, "again"), 0, "answered waiters are gone");
        drop(other);
        waiters.forget(&2);
        assert_eq!(waiters.answer(&2, "late"), 0, "a waiter that gave up is forgotten");
    }
}
