fn main() {
    println!("quickstart: not yet");
}
