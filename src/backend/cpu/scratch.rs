//! Work arrays reused across kernel calls.
//!
//! A fused kernel's temporaries (the GRU's input projections and gate gradients: megabytes
//! per call) are written in full before they are read, so zeroing them on every call — what
//! `vec![0.0; n]` does — is pure cost (≈ 9% of a GRU forward + backward). A `Scratch` takes a
//! buffer from its thread's small pool instead and gives it back when dropped; its contents
//! are whatever the last user left, which is why it is only for arrays written before read.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// How many free buffers a thread keeps; more are released to the allocator.
const POOL_SIZE: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// `len` floats of unspecified contents (see the module comment), borrowed from the thread's
/// pool until dropped.
pub struct Scratch {
    buffer: Vec<f32>,
    len: usize,
}

impl Scratch {
    pub fn new(len: usize) -> Scratch {
        let mut buffer = POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            // The smallest free buffer that is long enough, else the longest one (grown below).
            let fitting = (0..pool.len())
                .filter(|&i| pool[i].len() >= len)
                .min_by_key(|&i| pool[i].len());
            let pick = fitting.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
            pick.map(|i| pool.swap_remove(i)).unwrap_or_default()
        });
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        Scratch { buffer, len }
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buffer[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buffer[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_SIZE {
                pool.push(buffer);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_without_being_cleared_and_has_the_asked_length() {
        let first_address = {
            let mut a = Scratch::new(1000);
            a.fill(3.0);
            a.as_ptr()
        };
        let b = Scratch::new(600);
        assert_eq!(b.len(), 600);
        assert_eq!(b.as_ptr(), first_address, "the freed buffer comes back");
        assert!(b.iter().all(|&v| v == 3.0), "and is not cleared");
        // Held at once, two scratches are distinct buffers.
        let c = Scratch::new(600);
        assert_ne!(b.as_ptr(), c.as_ptr());
        assert_eq!(c.len(), 600);
        drop((b, c));
        // A longer request than any free buffer grows one.
        let d = Scratch::new(5000);
        assert_eq!(d.len(), 5000);
    }
}
