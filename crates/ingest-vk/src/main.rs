fn main() -> std::process::ExitCode {
    zakaz_core::cli::main(ingest_vk::run)
}
