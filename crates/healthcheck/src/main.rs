fn main() -> std::process::ExitCode {
    zakaz_core::cli::main(healthcheck::run)
}
