fn main() -> std::process::ExitCode {
    zakaz_core::cli::main(manage_timers::run)
}
