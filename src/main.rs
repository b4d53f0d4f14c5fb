//! The `seqrec` command line.

fn main() {
    std::process::exit(seqrec::cli::main());
}
