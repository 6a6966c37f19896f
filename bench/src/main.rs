fn main() {
    eprintln!("vanbench: not built yet");
    std::process::exit(1);
}
