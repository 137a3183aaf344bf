fn main() -> std::process::ExitCode {
    edgefarm::cli::main()
}
