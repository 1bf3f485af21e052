fn main() -> std::process::ExitCode {
    zakaz_core::cli::main(camp_queue::run)
}
