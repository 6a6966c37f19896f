fn main() {
    eprintln!("pnc: not built yet");
    std::process::exit(1);
}
