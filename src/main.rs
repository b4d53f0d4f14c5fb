fn main() {
    println!("seqrec {}", env!("CARGO_PKG_VERSION"));
}
