//! Sliding windows for the models whose short-term part looks at the latest L items only
//! (Caser, AttRec): at every position t of a `[B, n]` sequence, the window of items
//! t−L+1..=t (0 where it reaches before the sequence). Training on every window of a sequence
//! at once is the papers' sliding-window training, computed in one batch.

use crate::error::Result;
use crate::tensor::Ids;

/// `[B, n]` → `[B·n, L]`: row b·n + t holds the L items ending at position t.
pub fn all_windows(items: &Ids, window: usize) -> Result<Ids> {
    let (b, n) = (items.shape()[0], items.shape()[1]);
    let values = items.values();
    let mut out = vec![0u32; b * n * window];
    for row in 0..b {
        for t in 0..n {
            let dst = &mut out[(row * n + t) * window..(row * n + t + 1) * window];
            for (j, slot) in dst.iter_mut().enumerate() {
                // slot j holds position t − (L − 1) + j.
                if let Some(p) = (t + j + 1).checked_sub(window) {
                    *slot = values[row * n + p];
                }
            }
        }
    }
    Ids::from_vec(&[b * n, window], out)
}

/// `[B, n]` → `[B, L]`: the window ending at the last position.
pub fn last_windows(items: &Ids, window: usize) -> Result<Ids> {
    let (b, n) = (items.shape()[0], items.shape()[1]);
    let values = items.values();
    let mut out = vec![0u32; b * window];
    for row in 0..b {
        for j in 0..window {
            if let Some(p) = (n + j).checked_sub(window) {
                out[row * window + j] = values[row * n + p];
            }
        }
    }
    Ids::from_vec(&[b, window], out)
}

/// Each user id repeated n times: `[B]` → `[B·n]`.
pub fn repeat_users(users: &Ids, n: usize) -> Result<Ids> {
    let values: Vec<u32> = users
        .values()
        .iter()
        .flat_map(|&u| std::iter::repeat_n(u, n))
        .collect();
    Ids::from_vec(&[values.len()], values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_at_each_position() {
        let items = Ids::from_vec(&[1, 4], vec![0, 7, 8, 9]).unwrap();
        let w = all_windows(&items, 2).unwrap();
        assert_eq!(w.values(), &[0, 0, 0, 7, 7, 8, 8, 9]);
        assert_eq!(last_windows(&items, 3).unwrap().values(), &[7, 8, 9]);
        assert_eq!(last_windows(&items, 5).unwrap().values(), &[0, 0, 7, 8, 9]);
    }
}
