fn main() -> std::process::ExitCode {
    zakaz_core::cli::main(alerts::run)
}
