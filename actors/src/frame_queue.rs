//! A socket's bounded queue of frames: one producer (the fan-out, which never waits:
//! a full queue is the socket's problem, see `adapter::Subscriber`) and one consumer
//! (the socket's task).
//!
//! Why not tokio's `mpsc`: a channel allocates a block of 32 slots when it is made
//! and keeps it, about 1 KiB per queue, and every socket has two queues (its events
//! and its presence frames) for its whole life. This one holds a few dozen bytes
//! while empty, which is what an idle socket's queues are.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// Frames queued past this many slots give their memory back once the queue is
/// empty again (a burst does not leave its peak behind on an idle socket).
const KEPT_CAPACITY: usize = 4;

/// A queue holding at most `capacity` frames (at least one).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "a frame queue holds at least one frame");
    let shared = Arc::new(Shared {
        capacity,
        state: Mutex::new(State { queue: VecDeque::new(), waker: None, sender_gone: false, receiver_gone: false }),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Shared<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver's task, waiting for a frame.
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding the lock; a poisoned one still holds a
        // consistent queue.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The producing end. Dropping it ends the queue for the receiver once drained.
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues `value` unless the queue is full or its receiver is gone.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut state = self.0.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed(value));
            }
            if state.queue.len() >= self.0.capacity {
                return Err(TrySendError::Full(value));
            }
            state.queue.push_back(value);
            state.waker.take()
        };
        // Woken outside the lock: the receiver's task may run on another thread now.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.sender_gone = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The consuming end.
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next frame; `None` once the sender is gone and the queue is empty.
    /// Cancel-safe: a frame is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        if let Some(value) = take(&mut state) {
            return Poll::Ready(Some(value));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.0.lock();
        match take(&mut state) {
            Some(value) => Ok(value),
            None if state.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// How many frames are queued.
    pub fn len(&self) -> usize {
        self.0.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn take<T>(state: &mut State<T>) -> Option<T> {
    let value = state.queue.pop_front()?;
    if state.queue.is_empty() && state.queue.capacity() > KEPT_CAPACITY {
        state.queue = VecDeque::new();
    }
    Some(value)
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (queued, waker) = {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            (std::mem::take(&mut state.queue), state.waker.take())
        };
        // Dropped outside the lock; the waker, so that the gone task's memory goes
        // now, not when the sender does.
        drop((queued, waker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_arrive_in_order_up_to_the_bound() {
        let (sender, mut receiver) = bounded(2);
        sender.try_send(1).unwrap();
        sender.try_send(2).unwrap();
        assert!(matches!(sender.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(receiver.len(), 2);
        assert_eq!(receiver.recv().await, Some(1));
        sender.try_send(4).unwrap();
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.recv().await, Some(4));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        drop(sender);
        assert_eq!(receiver.recv().await, None);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_from_another_thread() {
        let (sender, mut receiver) = bounded(1);
        let waiting = tokio::spawn(async move { receiver.recv().await });
        tokio::task::yield_now().await;
        std::thread::spawn(move || sender.try_send("frame").unwrap()).join().unwrap();
        assert_eq!(waiting.await.unwrap(), Some("frame"));
    }

    #[test]
    fn a_gone_receiver_closes_the_queue_and_a_drained_burst_gives_its_memory_back() {
        let (sender, mut receiver) = bounded(64);
        for i in 0..64 {
            sender.try_send(i).unwrap();
        }
        while receiver.try_recv().is_ok() {}
        assert_eq!(receiver.0.lock().queue.capacity(), 0);
        drop(receiver);
        assert!(matches!(sender.try_send(1), Err(TrySendError::Closed(1))));
    }
}
