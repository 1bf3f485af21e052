fn main() -> std::process::ExitCode {
    zakaz_core::cli::main(api_sandbox::run)
}
