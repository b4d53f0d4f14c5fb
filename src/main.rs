//! The `seqrec` command line.

fn main() {
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { seqrec::backend::gpu::silence_device_select_layer() };
    std::process::exit(seqrec::cli::main());
}
