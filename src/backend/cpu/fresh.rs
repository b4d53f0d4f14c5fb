//! Fresh output buffers, filled piece by piece by parallel tasks.
//!
//! `vec![0.0; n]` zeroes the whole buffer on the calling thread before any parallel work
//! starts: serially, and for megabyte buffers through memory (glibc's `memset` streams past
//! the caches), so the tasks then read their pieces back cold. Here each task zeroes its own
//! piece just before filling it: in parallel, and hot in cache. On Zen 4 the serial `memset`
//! of dq, dk and dv was 4.5% of the samples of an L = 50 attention fwd+bwd while the second
//! core idled. Pure maps (`collect_chunks`) skip the zeroing and write each value once.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// The start of one buffer, shared by the tasks that each write a disjoint piece of it.
#[derive(Clone, Copy)]
struct Base(*mut MaybeUninit<f32>);

// SAFETY: tasks only touch the disjoint pieces `fill_blocks` hands them.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}

/// N fresh buffers, buffer n of `pieces × piece_lens[n]` floats, filled by
/// `task(state, index, [piece of each buffer])` for every piece index in `0..pieces` — on
/// rayon's threads (one `init()` state per thread) when `parallel`, else on this one. Each
/// piece is zeroed right before its task gets it, so a task may accumulate into it.
pub(crate) fn fill_pieces<const N: usize, S>(
    piece_lens: [usize; N],
    pieces: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    task: impl Fn(&mut S, usize, [&mut [f32]; N]) + Sync + Send,
) -> [Vec<f32>; N] {
    let lens = piece_lens.map(|piece_len| pieces * piece_len);
    fill_blocks(lens, piece_lens, pieces, parallel, init, task)
}

/// A fresh buffer of `len` floats, filled by `task(index, chunk)` over its `chunk`-float
/// chunks (the last one may be shorter), each zeroed first; in parallel when `parallel`.
pub(crate) fn fill_chunks(
    len: usize,
    chunk: usize,
    parallel: bool,
    task: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let chunk = chunk.max(1);
    let [buffer] = fill_blocks(
        [len],
        [chunk],
        len.div_ceil(chunk),
        parallel,
        || (),
        |_, index, [piece]| task(index, piece),
    );
    buffer
}

/// A fresh buffer of `len` floats whose chunk `index` (elements `start..end`, `chunk` long
/// but the last) holds the values `values(index, start..end)` yields; in parallel when
/// `parallel`. Unlike `fill_chunks` nothing is zeroed first: each value is written once.
/// For the pure maps (elementwise arithmetic, dropout), where zeroing a chunk only to
/// overwrite it was most of their remaining `memset`.
pub(crate) fn collect_chunks<I: ExactSizeIterator<Item = f32>>(
    len: usize,
    chunk: usize,
    parallel: bool,
    values: impl Fn(usize, std::ops::Range<usize>) -> I + Sync + Send,
) -> Vec<f32> {
    let chunk = chunk.max(1);
    let mut buffer = uninit_buffer(len);
    let write = |index: usize, piece: &mut [MaybeUninit<f32>]| {
        let start = index * chunk;
        let iter = values(index, start..start + piece.len());
        // Every slot is written below only if the iterator is long enough: checked before
        // anything is written (a short iterator is a caller bug, and panics here).
        assert!(iter.len() >= piece.len(), "collect_chunks: too few values");
        for (slot, value) in piece.iter_mut().zip(iter) {
            slot.write(value);
        }
    };
    if parallel {
        buffer
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(index, piece)| write(index, piece));
    } else {
        buffer
            .chunks_mut(chunk)
            .enumerate()
            .for_each(|(index, piece)| write(index, piece));
    }
    // SAFETY: the chunks cover the buffer and every chunk's slots were all written (the
    // length check above precedes the writes; a panic would have unwound past this).
    unsafe { assume_init(buffer) }
}

/// `len` slots, not yet written (allocated, never touched).
fn uninit_buffer(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut buffer = Vec::with_capacity(len);
    buffer.resize_with(len, MaybeUninit::uninit);
    buffer
}

/// The `Vec<f32>` of a fully initialized `Vec<MaybeUninit<f32>>`.
///
/// # Safety
/// Every element of `buffer` must be initialized.
unsafe fn assume_init(buffer: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut buffer = std::mem::ManuallyDrop::new(buffer);
    // SAFETY: initialized (the caller's promise); the pointer, length and capacity are the
    // Vec's own, and MaybeUninit<f32> has f32's layout and alignment.
    unsafe {
        Vec::from_raw_parts(
            buffer.as_mut_ptr().cast::<f32>(),
            buffer.len(),
            buffer.capacity(),
        )
    }
}

/// N fresh buffers, buffer n of `lens[n]` floats, filled like `fill_pieces` with piece
/// `index` of buffer n being its elements `index·chunks[n]..min((index+1)·chunks[n],
/// lens[n])` (so the last piece may be short); the pieces must cover every buffer.
pub(crate) fn fill_blocks<const N: usize, S>(
    lens: [usize; N],
    chunks: [usize; N],
    pieces: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    task: impl Fn(&mut S, usize, [&mut [f32]; N]) + Sync + Send,
) -> [Vec<f32>; N] {
    assert!(
        (0..N).all(|n| pieces * chunks[n] >= lens[n]),
        "fill_blocks: the pieces must cover every buffer"
    );
    let mut buffers: [Vec<MaybeUninit<f32>>; N] = lens.map(uninit_buffer);
    let bases: [Base; N] = std::array::from_fn(|n| Base(buffers[n].as_mut_ptr()));
    let run = |state: &mut S, index: usize| {
        let slices: [&mut [f32]; N] = std::array::from_fn(|n| {
            let start = (index * chunks[n]).min(lens[n]);
            let end = ((index + 1) * chunks[n]).min(lens[n]);
            // SAFETY: start..end lies inside buffer n (both clamped to its length); pieces
            // of different indices are disjoint and each index runs exactly once, so no
            // other task holds these elements.
            let piece =
                unsafe { std::slice::from_raw_parts_mut(bases[n].0.add(start), end - start) };
            piece.fill(MaybeUninit::new(0.0));
            // SAFETY: every element was initialized just above, and MaybeUninit<f32> has
            // f32's layout.
            unsafe { &mut *(piece as *mut [MaybeUninit<f32>] as *mut [f32]) }
        });
        task(state, index, slices);
    };
    if parallel {
        (0..pieces).into_par_iter().for_each_init(&init, run);
    } else {
        let mut state = init();
        (0..pieces).for_each(|index| run(&mut state, index));
    }
    // SAFETY: every piece index ran (a panicking task would have unwound past this) and the
    // pieces cover every buffer (asserted above), each piece zeroed before its task ran.
    buffers.map(|buffer| unsafe { assume_init(buffer) })
}

#[cfg(test)]
mod tests {
    use super::{collect_chunks, fill_chunks, fill_pieces};

    #[test]
    fn every_piece_is_zeroed_then_filled_by_its_own_task() {
        for parallel in [false, true] {
            let [a, b] = fill_pieces(
                [3, 2],
                1000,
                parallel,
                || 0usize,
                |calls, index, [a, b]| {
                    *calls += 1;
                    assert!(a.iter().chain(b.iter()).all(|&v| v == 0.0));
                    a.iter_mut().for_each(|v| *v += index as f32);
                    b[1] = -(index as f32);
                },
            );
            assert_eq!((a.len(), b.len()), (3000, 2000));
            for index in 0..1000 {
                assert_eq!(a[3 * index..3 * index + 3], [index as f32; 3]);
                assert_eq!(b[2 * index..2 * index + 2], [0.0, -(index as f32)]);
            }
        }
        let [empty] = fill_pieces([4], 0, true, || (), |_, _, _: [&mut [f32]; 1]| {});
        assert!(empty.is_empty());
    }

    #[test]
    fn collected_chunks_hold_their_values() {
        for (len, chunk) in [(10, 4), (0, 4), (100_000, 4096)] {
            for parallel in [false, true] {
                let out = collect_chunks(len, chunk, parallel, |_, range| {
                    range.map(|i| i as f32 * 0.5)
                });
                let expected: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
                assert_eq!(out, expected, "len {len}, chunk {chunk}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "too few values")]
    fn a_short_chunk_of_values_panics() {
        collect_chunks(10, 4, false, |_, range| range.skip(1).map(|i| i as f32));
    }

    #[test]
    fn chunks_cover_the_buffer_with_a_short_last_one() {
        for (len, chunk) in [(10, 4), (8, 4), (0, 4), (3, 0), (100_000, 4096)] {
            for parallel in [false, true] {
                let out = fill_chunks(len, chunk, parallel, |index, piece| {
                    assert!(piece.iter().all(|&v| v == 0.0));
                    let start = index * chunk.max(1);
                    for (j, v) in piece.iter_mut().enumerate() {
                        *v += (start + j) as f32;
                    }
                });
                let expected: Vec<f32> = (0..len).map(|i| i as f32).collect();
                assert_eq!(out, expected, "len {len}, chunk {chunk}");
            }
        }
    }
}
