fn main() -> std::process::ExitCode {
    manage_timers::front::main()
}
