//! The baseline of `scripts/bench.sh healthcheck`: the smallest tiny_http server (the library
//! the healthcheck ran on before its own bounded front), with the same number of worker
//! threads and `TCP_NODELAY`, answering every request with a fixed body.
//! Usage: `hello ADDR [THREADS]`.

use std::sync::Arc;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8099".to_owned());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(4);
    let listener = std::net::TcpListener::bind(&addr).expect("bind");
    socket2::SockRef::from(&listener)
        .set_tcp_nodelay(true)
        .expect("TCP_NODELAY");
    let server = Arc::new(tiny_http::Server::from_listener(listener, None).expect("serve"));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let _ =
                        request.respond(tiny_http::Response::from_string("{\"status\":\"ok\"}"));
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
