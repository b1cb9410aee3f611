fn main() {
    println!("aepg {}", env!("CARGO_PKG_VERSION"));
}
