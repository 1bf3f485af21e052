//! HTTP/1.1 on std sockets: one thread per connection, keep-alive, request bodies by
//! `Content-Length` or chunked, every answer with its `Content-Length`.
//!
//! Not tiny_http: its connection pool counts a thread as idle until that thread has woken
//! and taken a task, so two connections accepted close together can leave the second one
//! queued behind threads that sit on the loader's idle keep-alive connections. The loader
//! then waits for an answer nobody reads its request for (tests stalled at 0 % CPU for 90 or
//! 180 s, until the client dropped an idle connection and freed a thread).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::http::{Req, Resp};

/// A request head longer than this is refused (431).
const MAX_HEAD_BYTES: u64 = 64 * 1024;
/// A request body longer than this is refused (413): the sandbox's APIs take small JSON.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

pub type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// Connections being served, so that stopping can close them.
type Open = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A listening server; dropping it stops accepting and closes every open connection.
pub struct Listening {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    open: Open,
    accept: Option<JoinHandle<()>>,
}

impl Listening {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

pub fn serve(listener: TcpListener, handler: Handler) -> io::Result<Listening> {
    let addr = listener.local_addr()?;
    let stopping = Arc::new(AtomicBool::new(false));
    let open: Open = Arc::default();
    let accept = {
        let (stopping, open) = (stopping.clone(), open.clone());
        std::thread::Builder::new()
            .name("sandbox-accept".into())
            .spawn(move || accept_loop(&listener, &handler, &stopping, &open))?
    };
    Ok(Listening {
        addr,
        stopping,
        open,
        accept: Some(accept),
    })
}

fn accept_loop(listener: &TcpListener, handler: &Handler, stopping: &AtomicBool, open: &Open) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a moment
                // rather than spin.
                tracing::warn!(error = %e, "api-sandbox: accept failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        match stream.try_clone() {
            Ok(copy) => {
                open.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, copy);
            }
            Err(_) => continue,
        }
        let registered = Registered {
            open: open.clone(),
            id,
        };
        let handler = handler.clone();
        // If the thread cannot start, the closure (and the registration) is dropped here.
        let _ = std::thread::Builder::new()
            .name("sandbox-conn".into())
            .spawn(move || {
                let _registered = registered;
                let _ = connection(stream, &handler);
            });
    }
}

/// A connection in [`Open`]; dropped (the connection over, however it ended), it leaves the
/// list and closes the socket, so that no copy keeps a client waiting.
struct Registered {
    open: Open,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let stream = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        if let Some(stream) = stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the blocked accept with a connection of our own.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.addr.port()))
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::from((Ipv6Addr::LOCALHOST, self.addr.port()))
            }
            _ => self.addr,
        };
        let woke = TcpStream::connect_timeout(&wake, std::time::Duration::from_secs(2)).is_ok();
        if let Some(accept) = self.accept.take()
            && woke
        {
            let _ = accept.join();
        }
        for stream in self.open.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Requests of one connection, answered in order until the client closes it or asks to.
fn connection(stream: TcpStream, handler: &Handler) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(refused) => return refuse(&mut reader, &mut writer, refused),
        };
        let keep_alive = head.keep_alive();
        let framing = match Framing::of(&head) {
            Ok(framing) => framing,
            Err(refused) => return refuse(&mut reader, &mut writer, refused),
        };
        if head.version == "HTTP/1.1"
            && head
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = match read_body(&mut reader, framing) {
            Ok(body) => body,
            Err(refused) => return refuse(&mut reader, &mut writer, refused),
        };
        let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
        let req = Req {
            method: head.method.clone(),
            path: percent_decode(path),
            query: url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            headers: head.headers,
            body,
        };
        // A handler that panics answers 500 and ends the connection, as tiny_http did: the
        // client gets an answer, never a wait.
        let resp = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&req))) {
            Ok(resp) => resp,
            Err(_) => {
                let _ = answer(
                    &mut writer,
                    false,
                    false,
                    &plain(500, "the sandbox failed on this request"),
                );
                return Ok(());
            }
        };
        answer(&mut writer, keep_alive, req.method == "HEAD", &resp)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Answer a refusal, then close without a reset: the client's unread bytes are read and
/// dropped first (a bounded amount, for at most a second), or closing would reset the
/// connection and could discard the answer before the client read it.
fn refuse(
    reader: &mut impl Read,
    writer: &mut TcpStream,
    Refused(status, why): Refused,
) -> io::Result<()> {
    let _ = answer(writer, false, false, &plain(status, why));
    let _ = writer.shutdown(Shutdown::Write);
    let _ = writer.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let _ = io::copy(&mut reader.take(MAX_HEAD_BYTES * 16), &mut io::sink());
    Ok(())
}

/// Why a request is not read further: the status to answer with and a line saying why.
struct Refused(u16, &'static str);

impl From<io::Error> for Refused {
    fn from(_: io::Error) -> Refused {
        Refused(400, "the request could not be read")
    }
}

struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }

    fn keep_alive(&self) -> bool {
        let says = |token: &str| {
            self.header("connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if self.version == "HTTP/1.0" {
            says("keep-alive")
        } else {
            !says("close")
        }
    }
}

/// The request line and headers; `None` when the client closed between requests.
fn read_head(reader: &mut impl BufRead) -> Result<Option<Head>, Refused> {
    let mut limited = reader.take(MAX_HEAD_BYTES);
    let mut line = Vec::new();
    // Empty lines before a request line are allowed (RFC 9112 §2.2).
    let request_line = loop {
        line.clear();
        if limited.read_until(b'\n', &mut line)? == 0 {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(Refused(400, "the request ends early"))
            };
        }
        let text = trim_line_end(&line);
        if !text.is_empty() {
            break String::from_utf8(text.to_vec())
                .map_err(|_| Refused(400, "the request line is not UTF-8"))?;
        }
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused(
            400,
            "the request line is not `METHOD TARGET VERSION`",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refused(505, "only HTTP/1.x is served"));
    }
    let mut headers = Vec::new();
    loop {
        line.clear();
        if limited.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
            return Err(if limited.limit() == 0 {
                Refused(431, "the request head is too long")
            } else {
                Refused(400, "the request head ends early")
            });
        }
        let text = trim_line_end(&line);
        if text.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(text);
        let (name, value) = text
            .split_once(':')
            .ok_or(Refused(400, "a header line has no `:`"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    }))
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// How a request's body is delimited.
#[derive(Clone, Copy)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

impl Framing {
    /// Strict, so that a request is never read two ways: `Transfer-Encoding` and
    /// `Content-Length` together, a second `Content-Length`, a length that is not plain digits
    /// or a coding other than `chunked` are refused.
    fn of(head: &Head) -> Result<Framing, Refused> {
        let values = |name: &str| {
            head.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        let (codings, lengths) = (values("transfer-encoding"), values("content-length"));
        match (codings.as_slice(), lengths.as_slice()) {
            ([], []) => Ok(Framing::Empty),
            ([coding], []) if coding.trim().eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            ([_], []) => Err(Refused(501, "only the `chunked` transfer coding is served")),
            ([], [length]) => {
                let length = length.trim();
                if length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Refused(400, "`Content-Length` is not a number"));
                }
                match length.parse::<u64>() {
                    Ok(n) if n <= MAX_BODY_BYTES => Ok(Framing::Length(n)),
                    _ => Err(Refused(413, "the request body is too long")),
                }
            }
            _ => Err(Refused(
                400,
                "the body's length is given more than once or two ways",
            )),
        }
    }
}

fn read_body(reader: &mut impl BufRead, framing: Framing) -> Result<Vec<u8>, Refused> {
    let length = match framing {
        Framing::Empty => return Ok(Vec::new()),
        Framing::Chunked => return read_chunked(reader),
        Framing::Length(n) => n,
    };
    // What the head says is not trusted with memory before the bytes arrive.
    let mut body = Vec::with_capacity(length.min(64 * 1024) as usize);
    reader.take(length).read_to_end(&mut body)?;
    if body.len() as u64 != length {
        return Err(Refused(400, "the request body ends early"));
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, Refused> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    // Bounded: every chunk adds at least one byte to the body, which is bounded.
    loop {
        line.clear();
        reader.take(1024).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(Refused(400, "a chunk size line is too long or ends early"));
        }
        let size = std::str::from_utf8(trim_line_end(&line))
            .ok()
            .and_then(|l| u64::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
            .ok_or(Refused(400, "a chunk size is not a number"))?;
        if size == 0 {
            // Trailers, up to the empty line, all of them within the head's bound.
            let mut trailers = reader.take(MAX_HEAD_BYTES);
            loop {
                line.clear();
                if trailers.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
                    return Err(Refused(400, "the trailers are too long or end early"));
                }
                if trim_line_end(&line).is_empty() {
                    return Ok(body);
                }
            }
        }
        if (body.len() as u64).saturating_add(size) > MAX_BODY_BYTES {
            return Err(Refused(413, "the request body is too long"));
        }
        let before = body.len();
        reader.take(size).read_to_end(&mut body)?;
        let mut end = [0u8; 2];
        if (body.len() - before) as u64 != size
            || reader.read_exact(&mut end).is_err()
            || &end != b"\r\n"
        {
            return Err(Refused(400, "a chunk ends early"));
        }
    }
}

fn plain(status: u16, why: &str) -> Resp {
    Resp {
        status,
        headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
        body: format!("{why}\n").into_bytes(),
    }
}

/// The head, then the body (unless the request was HEAD). The framing headers are the
/// server's own: a handler's `Content-Length`, `Transfer-Encoding` or `Connection` is dropped.
fn answer(out: &mut TcpStream, keep_alive: bool, head_only: bool, resp: &Resp) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| k.eq_ignore_ascii_case(f));
        let unsafe_text = |s: &str| s.contains(['\r', '\n']);
        if !framing && !unsafe_text(k) && !unsafe_text(v) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    // 1xx, 204 and 304 answers have no body, whatever the handler gave (a client would read
    // its bytes as the next answer).
    let bodiless = resp.status < 200 || resp.status == 204 || resp.status == 304;
    if !bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if !head_only && !bodiless {
        out.write_all(&resp.body)?;
    }
    out.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// The path with `%XX` decoded (a `+` stays a `+`: it is a space only in a query).
pub fn percent_decode(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A server answering with what it read: method, path, the query and the body.
    fn echo() -> Listening {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        serve(
            listener,
            Arc::new(|req: &Req| Resp {
                status: match req.path.as_str() {
                    "/panic" => panic!("a handler's bug"),
                    "/204" => 204,
                    _ => 200,
                },
                headers: vec![("Content-Length".into(), "999".into())],
                body: format!(
                    "{} {} {:?} {}",
                    req.method,
                    req.path,
                    req.query,
                    String::from_utf8_lossy(&req.body)
                )
                .into_bytes(),
            }),
        )
        .unwrap()
    }

    fn connect(server: &Listening) -> TcpStream {
        let s = TcpStream::connect(server.addr()).unwrap();
        // A bound, not a measure: a server that never answers fails the test instead of
        // hanging it.
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// One answer: its status line, headers and body (by its Content-Length, none without).
    fn read_answer(reader: &mut BufReader<TcpStream>) -> (String, Vec<String>, String) {
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            headers.push(line.trim_end().to_owned());
        }
        let length: usize = headers
            .iter()
            .find_map(|h| h.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (
            status.trim_end().to_owned(),
            headers,
            String::from_utf8(body).unwrap(),
        )
    }

    #[test]
    fn requests_on_one_connection_are_answered_in_turn_with_their_own_length() {
        let server = echo();
        let mut s = connect(&server);
        let mut reader = BufReader::new(s.try_clone().unwrap());
        s.write_all(b"GET /a%20b+c?x=1&y=%D0%B4 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
        let (status, headers, body) = read_answer(&mut reader);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, r#"GET /a b+c [("x", "1"), ("y", "д")] "#);
        assert_eq!(
            headers
                .iter()
                .filter(|h| h.starts_with("Content-Length"))
                .count(),
            1,
            "the handler's own length is dropped: {headers:?}"
        );
        assert_eq!(read_answer(&mut reader).2, "POST /p [] hello");
    }

    #[test]
    fn a_chunked_body_arrives_whole() {
        let server = echo();
        let mut s = connect(&server);
        s.write_all(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n")
            .unwrap();
        let (_, _, body) = read_answer(&mut BufReader::new(s));
        assert_eq!(body, "POST /c [] abc0123456789");
    }

    #[test]
    fn a_client_asking_to_close_gets_its_answer_then_the_end_and_head_gets_no_body() {
        let server = echo();
        let mut s = connect(&server);
        s.write_all(b"HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        let answers: Vec<&str> = all.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
        assert_eq!(answers.len(), 2, "{all}");
        assert!(
            answers[0].ends_with("\r\n\r\n"),
            "no body after HEAD: {all}"
        );
        assert!(answers[1].contains("Connection: close\r\n"), "{all}");
        assert!(answers[1].ends_with("GET /g [] "), "{all}");
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused_with_a_status() {
        let server = echo();
        for (request, status) in [
            (b"NONSENSE\r\n\r\n".to_vec(), "HTTP/1.1 400 Bad Request"),
            (
                b"GET / HTTP/2.0\r\n\r\n".to_vec(),
                "HTTP/1.1 505 HTTP Version Not Supported",
            ),
            (
                format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70_000)).into_bytes(),
                "HTTP/1.1 431 Request Header Fields Too Large",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
                "HTTP/1.1 413 Content Too Large",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n".to_vec(),
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
                "HTTP/1.1 501 Not Implemented",
            ),
            (
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(2000)).into_bytes(),
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n".to_vec(),
                "HTTP/1.1 413 Content Too Large",
            ),
        ] {
            let mut s = connect(&server);
            s.write_all(&request).unwrap();
            let (got, _, _) = read_answer(&mut BufReader::new(s));
            assert_eq!(got, status);
        }
    }

    #[test]
    fn a_handler_that_panics_answers_500_and_closes() {
        let server = echo();
        let mut s = connect(&server);
        s.write_all(b"GET /panic HTTP/1.1\r\n\r\n").unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        assert!(
            all.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{all}"
        );
        assert!(all.contains("Connection: close\r\n"), "{all}");
        // The server goes on serving others.
        let mut other = connect(&server);
        other.write_all(b"GET /after HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_answer(&mut BufReader::new(other)).2, "GET /after [] ");
    }

    #[test]
    fn a_204_has_no_body_so_the_next_answer_reads_right() {
        let server = echo();
        let mut s = connect(&server);
        s.write_all(b"GET /204 HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(s);
        let (status, headers, body) = read_answer(&mut reader);
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 204 No Content", "")
        );
        assert!(
            !headers.iter().any(|h| h.starts_with("Content-Length")),
            "{headers:?}"
        );
        assert_eq!(read_answer(&mut reader).2, "GET /next [] ");
    }

    #[test]
    fn idle_keep_alive_connections_never_hold_up_a_new_one() {
        let server = echo();
        // More idle connections, each with a request answered first, than any pool of
        // threads tiny_http started with.
        let idle: Vec<TcpStream> = (0..40)
            .map(|i| {
                let mut s = connect(&server);
                s.write_all(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes())
                    .unwrap();
                let (_, _, body) = read_answer(&mut BufReader::new(s.try_clone().unwrap()));
                assert_eq!(body, format!("GET /{i} [] "));
                s
            })
            .collect();
        let mut fresh = connect(&server);
        fresh.write_all(b"GET /fresh HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_answer(&mut BufReader::new(fresh)).2, "GET /fresh [] ");
        drop(idle);
    }

    #[test]
    fn stopping_closes_the_open_connections() {
        let server = echo();
        let mut s = connect(&server);
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        read_answer(&mut reader);
        drop(server);
        let mut rest = Vec::new();
        assert_eq!(
            reader.read_to_end(&mut rest).unwrap(),
            0,
            "closed, nothing more"
        );
    }
}
