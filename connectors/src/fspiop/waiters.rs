//! Requests waiting on this node for their asynchronous FSPIOP answers (a
//! `PUT` callback or its error), by whatever the answer names. Used where
//! a caller waits for the scheme's answer before it answers its own client
//! (the oracle's `/participants`, a payee DFSP's `/transactions`), and by
//! the one effect that needs an answer it does not commit (a payment's
//! payee lookup, `parties`); the other answers flows wait for are inputs.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::client::SendError;
use super::types::ErrorBody;

/// Why a question sent through the scheme got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The scheme or the peer answered with an error (a synchronous
    /// refusal or an error callback).
    #[error("refused: {} {}", .0.error_information.error_code, .0.error_information.error_description)]
    Refused(ErrorBody),
    /// The request may not have reached the switch; asking again is safe.
    #[error("the request did not reach the switch: {0}")]
    NotDelivered(String),
    #[error("no answer within {0} ms")]
    Timeout(u64),
}

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

impl<K: Eq + Hash + Clone, T: Clone> Waiters<K, Result<T, ErrorBody>> {
    /// Sends a request (`send`) whose callback names `key` and waits up to
    /// `timeout_ms` for it (registered before the request goes, so an
    /// answer that comes at once is not missed).
    pub async fn ask(
        &self,
        key: K,
        send: impl Future<Output = Result<(), SendError>>,
        timeout_ms: u64,
    ) -> Result<T, AskError> {
        let receiver = self.wait(key.clone());
        if let Err(error) = send.await {
            drop(receiver);
            self.forget(&key);
            return Err(match error {
                SendError::Rejected { body, .. } => AskError::Refused(body),
                SendError::Transport(reason) => AskError::NotDelivered(reason),
            });
        }
        match tokio::time::timeout(Duration::from_millis(timeout_ms), receiver).await {
            Ok(Ok(answer)) => answer.map_err(AskError::Refused),
            Ok(Err(_)) | Err(_) => {
                self.forget(&key);
                Err(AskError::Timeout(timeout_ms))
            }
        }
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

    #[tokio::test]
    async fn an_asked_question_gets_its_answer_its_refusal_or_its_timeout_and_leaves_nothing_behind() {
        let waiters: Waiters<u32, Result<&str, ErrorBody>> = Waiters::default();
        // The answer comes while the request is still being sent.
        let answering = waiters.clone();
        let send = async move {
            assert_eq!(answering.answer(&1, Ok("found")), 1, "registered before sending");
            Ok(())
        };
        assert_eq!(waiters.ask(1, send, 1_000).await, Ok("found"));
        let refusing = waiters.clone();
        let send = async move {
            refusing.answer(&2, Err(ErrorBody::new("3204", "not found")));
            Ok(())
        };
        assert_eq!(
            waiters.ask(2, send, 1_000).await,
            Err(AskError::Refused(ErrorBody::new("3204", "not found")))
        );
        let lost = async { Err(SendError::Transport("connection refused".into())) };
        assert_eq!(
            waiters.ask(3, lost, 1_000).await,
            Err(AskError::NotDelivered("connection refused".into()))
        );
        assert_eq!(waiters.ask(4, async { Ok(()) }, 10).await, Err(AskError::Timeout(10)));
        assert!(waiters.lock().is_empty(), "no waiter outlives its question");
    }
}
