//! A small HTTP/1.x front with hard bounds, for a server anyone can reach.
//!
//! * One thread runs every connection (a current-thread tokio runtime of the front's own): a
//!   slow or idle client costs one descriptor and a few kilobytes, never a thread.
//! * Every request has one deadline for all of it: the head, a body, and, on a kept-alive
//!   connection, the idle time before it. The answer must be taken within a deadline too.
//! * At most `max_connections` are open. At the cap, the connection that has waited longest
//!   for its request (its deadline nearest) is closed to make room for the newcomer, so a
//!   flood of slow clients cannot lock out a probe; requests being answered are never cut.
//! * A fixed pool of worker threads computes the answers; complete requests queue for them.
//! * Accepting is retried while it fails for want of descriptors or memory (the oldest waiting
//!   connection is closed to free one) and for errors of a single connection. When it fails
//!   otherwise, or for longer than a client timeout (by then every waiting connection of ours
//!   has been cut, so the shortage is not ours to fix), the front records why and stops
//!   accepting; the caller exits so that systemd restarts it.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::{Instant, timeout_at};

/// The longest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// The longest request body read (and discarded: no route takes one).
pub const MAX_BODY: usize = 64 * 1024;
/// How long accepting pauses after failing for want of resources.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The front's bounds.
#[derive(Debug, Clone)]
pub struct Options {
    pub workers: usize,
    pub max_connections: usize,
    /// The deadline of a request (idle time, head and body) and of taking its answer.
    pub client_timeout: Duration,
}

/// A complete request, as a worker sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without a query string.
    pub path: String,
    /// When its head (and body) had arrived.
    pub received: std::time::Instant,
}

/// An answer. For `HEAD` the front sends the headers of the body and not the body.
#[derive(Debug, Clone)]
pub struct Response {
    pub code: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, &'static str)>,
    /// Sent first: a part shared by many answers (a cached rendering), never copied per
    /// request but into the socket's buffer.
    pub shared: Option<Arc<str>>,
    pub body: String,
}

impl Response {
    pub fn new(code: u16, content_type: &'static str, body: impl Into<String>) -> Response {
        Response {
            code,
            content_type,
            headers: Vec::new(),
            shared: None,
            body: body.into(),
        }
    }

    fn error(code: u16, message: &str) -> Response {
        Response::new(
            code,
            "application/json",
            serde_json::json!({ "error": message }).to_string(),
        )
    }
}

/// What answers requests: called on the worker threads.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// Counters of the front, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub open: AtomicUsize,
    pub max: AtomicUsize,
    /// Closed at the cap to make room for a new connection.
    pub evicted: AtomicU64,
    /// Closed because a request (or taking its answer) passed its deadline.
    pub timed_out: AtomicU64,
    /// Closed after a 4xx/5xx for a request that was not HTTP or too large.
    pub rejected: AtomicU64,
    /// `accept()` failures (the connection-level ones included).
    pub accept_errors: AtomicU64,
}

/// The running front. Dropping it does not stop it: call [`Front::stop`].
pub struct Front {
    stop: Arc<Notify>,
    failure: Arc<Mutex<Option<String>>>,
    acceptor: std::thread::JoinHandle<()>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Front {
    /// Serve `listener` (bound, listening) until [`Front::stop`].
    pub fn start(
        listener: std::net::TcpListener,
        options: Options,
        counters: Arc<Counters>,
        handler: Arc<Handler>,
    ) -> std::io::Result<Front> {
        listener.set_nonblocking(true)?;
        counters
            .max
            .store(options.max_connections, Ordering::SeqCst);
        let (jobs, queue) = mpsc::channel::<Job>(options.workers * 8);
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..options.workers)
            .map(|i| {
                let (queue, handler) = (queue.clone(), handler.clone());
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || work(&queue, &*handler))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let stop = Arc::new(Notify::new());
        let failure = Arc::new(Mutex::new(None));
        let ctx = Arc::new(Ctx {
            options,
            jobs,
            conns: Mutex::new(Conns::default()),
            freed: Notify::new(),
            counters,
        });
        let (stop2, failure2) = (stop.clone(), failure.clone());
        let acceptor = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            fail(&failure2, format!("cannot watch the listening socket: {e}"));
                            stop2.notified().await;
                            return;
                        }
                    };
                    if let Err(reason) = accept_loop(&listener, &ctx, &stop2).await {
                        drop(listener);
                        fail(&failure2, reason);
                        stop2.notified().await;
                    }
                    drained(&ctx).await;
                });
                // Dropping the runtime closes the connections still open.
            })?;
        Ok(Front {
            stop,
            failure,
            acceptor,
            workers,
        })
    }

    /// Stop accepting, let the requests being answered finish (within a client timeout),
    /// close the other connections and join every thread.
    pub fn stop(self) {
        self.stop.notify_one();
        let _ = self.acceptor.join();
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Why the front stopped accepting, once it has.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fail(failure: &Mutex<Option<String>>, reason: String) {
    tracing::error!("the HTTP server stopped accepting connections: {reason}");
    *lock(failure) = Some(reason);
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Response>,
}

/// A worker: answers queued requests until the queue closes.
fn work(queue: &Mutex<mpsc::Receiver<Job>>, handler: &Handler) {
    loop {
        let Some(job) = lock(queue).blocking_recv() else {
            return;
        };
        let answer =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&job.request)))
                .unwrap_or_else(|_| {
                    tracing::error!(path = %job.request.path, "answering a request panicked");
                    Response::error(500, "internal error")
                });
        // The client may have gone (or been cut) meanwhile.
        let _ = job.reply.send(answer);
    }
}

/// What every connection shares.
struct Ctx {
    options: Options,
    jobs: mpsc::Sender<Job>,
    conns: Mutex<Conns>,
    /// A connection closed (a slot is free).
    freed: Notify,
    counters: Arc<Counters>,
}

/// The open connections: which may be cut to make room, nearest deadline first.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: usize,
    /// Connections with a request being answered (never cut to make room).
    busy: usize,
    /// Cut, not yet closed.
    evicting: usize,
    /// Connections waiting for their client, by deadline.
    waiting: BTreeSet<(Instant, u64)>,
    entries: HashMap<u64, Entry>,
}

struct Entry {
    abort: Option<AbortHandle>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the client (to send a request, or to take an answer) until then.
    Waiting(Instant),
    /// A request is being answered.
    Busy,
    /// Cut to make room; closes at its task's next turn.
    Evicted,
}

impl Conns {
    fn insert(&mut self, id: u64, deadline: Instant) {
        self.open += 1;
        self.entries.insert(
            id,
            Entry {
                abort: None,
                state: State::Waiting(deadline),
            },
        );
        self.waiting.insert((deadline, id));
    }

    fn set_waiting(&mut self, id: u64, deadline: Instant) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        match e.state {
            State::Evicted => return,
            State::Waiting(old) => {
                self.waiting.remove(&(old, id));
            }
            State::Busy => self.busy -= 1,
        }
        e.state = State::Waiting(deadline);
        self.waiting.insert((deadline, id));
    }

    fn set_busy(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if let State::Waiting(old) = e.state {
            self.waiting.remove(&(old, id));
            e.state = State::Busy;
            self.busy += 1;
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        match e.state {
            State::Waiting(d) => {
                self.waiting.remove(&(d, id));
            }
            State::Busy => self.busy -= 1,
            State::Evicted => self.evicting -= 1,
        }
        self.open -= 1;
    }

    /// Cut the waiting connection whose deadline is nearest; false when none waits.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, id)) = self.waiting.pop_first() else {
            return false;
        };
        let e = self
            .entries
            .get_mut(&id)
            .expect("waiting connections have entries");
        e.state = State::Evicted;
        self.evicting += 1;
        if let Some(abort) = e.abort.take() {
            abort.abort();
        }
        true
    }
}

/// Removes its connection from [`Conns`] when the connection's task ends or is cut.
struct Registered {
    id: u64,
    ctx: Arc<Ctx>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let open = {
            let mut conns = lock(&self.ctx.conns);
            conns.remove(self.id);
            conns.open
        };
        self.ctx.counters.open.store(open, Ordering::SeqCst);
        self.ctx.freed.notify_one();
    }
}

enum AcceptError {
    /// That one connection's problem (it was reset, say): accept the next.
    Connection,
    /// Out of descriptors, buffers or memory: free some, retry for a while.
    Resources,
    Fatal,
}

fn classify(e: &std::io::Error) -> AcceptError {
    use nix::errno::Errno;
    let Some(code) = e.raw_os_error() else {
        return AcceptError::Fatal;
    };
    match Errno::from_raw(code) {
        Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM => AcceptError::Resources,
        // accept(2): "Linux accept() passes already-pending network errors on the new socket
        // as an error code from accept()": retry.
        Errno::ECONNABORTED
        | Errno::ECONNRESET
        | Errno::EINTR
        | Errno::EAGAIN
        | Errno::EPROTO
        | Errno::ENOPROTOOPT
        | Errno::EHOSTDOWN
        | Errno::ENONET
        | Errno::EHOSTUNREACH
        | Errno::EOPNOTSUPP
        | Errno::ENETDOWN
        | Errno::ENETUNREACH
        | Errno::ETIMEDOUT
        | Errno::EPERM => AcceptError::Connection,
        _ => AcceptError::Fatal,
    }
}

/// Accept until told to stop (`Ok`) or until accepting fails for good (`Err(reason)`).
async fn accept_loop(listener: &TcpListener, ctx: &Arc<Ctx>, stop: &Notify) -> Result<(), String> {
    let timeout = ctx.options.client_timeout;
    let mut failing_since: Option<Instant> = None;
    loop {
        // Room for one more first: at the cap, the connection waiting longest is cut.
        loop {
            let room = {
                let mut conns = lock(&ctx.conns);
                if conns.open < ctx.options.max_connections {
                    true
                } else {
                    if conns.evicting == 0 && conns.evict_oldest() {
                        ctx.counters.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    false
                }
            };
            if room {
                break;
            }
            tokio::select! {
                _ = ctx.freed.notified() => {}
                _ = stop.notified() => return Ok(()),
            }
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.notified() => return Ok(()),
        };
        match accepted {
            Ok((stream, _)) => {
                failing_since = None;
                admit(stream, ctx);
            }
            Err(e) => {
                ctx.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                match classify(&e) {
                    AcceptError::Connection => {}
                    AcceptError::Fatal => return Err(format!("accept() failed: {e}")),
                    AcceptError::Resources => {
                        let since = *failing_since.get_or_insert_with(|| {
                            tracing::warn!("accept() failed: {e}; closing the oldest waiting connection and retrying");
                            Instant::now()
                        });
                        if since.elapsed() > timeout {
                            return Err(format!(
                                "accept() failed for {:.1} s: {e}",
                                since.elapsed().as_secs_f64()
                            ));
                        }
                        {
                            let mut conns = lock(&ctx.conns);
                            if conns.evicting == 0 && conns.evict_oldest() {
                                ctx.counters.evicted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                            _ = stop.notified() => return Ok(()),
                        }
                    }
                }
            }
        }
    }
}

/// After the listener closed: wait (at most a client timeout) for the requests being answered.
async fn drained(ctx: &Ctx) {
    let until = Instant::now() + ctx.options.client_timeout;
    while Instant::now() < until {
        if lock(&ctx.conns).busy == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn admit(stream: TcpStream, ctx: &Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + ctx.options.client_timeout;
    // Locked until the task's abort handle is in place: the task waits for it.
    let mut conns = lock(&ctx.conns);
    let id = conns.next_id;
    conns.next_id += 1;
    conns.insert(id, deadline);
    ctx.counters.open.store(conns.open, Ordering::SeqCst);
    let registered = Registered {
        id,
        ctx: ctx.clone(),
    };
    let task = tokio::spawn(connection(stream, deadline, registered));
    if let Some(e) = conns.entries.get_mut(&id) {
        e.abort = Some(task.abort_handle());
    }
}

/// How a connection ended, for the counters.
enum End {
    Done,
    TimedOut,
    Rejected,
}

async fn connection(stream: TcpStream, deadline: Instant, registered: Registered) {
    let ctx = registered.ctx.clone();
    let end = serve(&stream, deadline, &registered).await;
    match end {
        End::Done => {}
        End::TimedOut => {
            ctx.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        End::Rejected => {
            ctx.counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }
    linger(
        &stream,
        Instant::now() + ctx.options.client_timeout.min(Duration::from_secs(1)),
    )
    .await;
}

/// Requests on one connection, until it closes.
async fn serve(stream: &TcpStream, mut deadline: Instant, reg: &Registered) -> End {
    let ctx = &reg.ctx;
    let timeout = ctx.options.client_timeout;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head = match timeout_at(deadline, read_head(stream, &mut buf)).await {
            Err(_) => {
                // Half a request gets a 408; an idle kept-alive connection is just closed.
                if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    send_now(stream, &Response::error(408, "request timeout"), true);
                }
                return End::TimedOut;
            }
            Ok(Err(_)) => return End::Done,
            Ok(Ok(Parsed::Rejected(code, why))) => {
                let _ = timeout_at(
                    Instant::now() + timeout,
                    write_all(stream, &encode(&Response::error(code, why), false, false)),
                )
                .await;
                return End::Rejected;
            }
            Ok(Ok(Parsed::Head(head))) => head,
        };
        buf.drain(..head.length);
        // A body no route needs: read and dropped, within the same deadline.
        let rejected = match head.body {
            Body::Chunked => Some((411, "request bodies need a Content-Length")),
            Body::Length(n) if n > MAX_BODY => Some((413, "request body too large")),
            _ => None,
        };
        if let Some((code, why)) = rejected {
            let _ = timeout_at(
                Instant::now() + timeout,
                write_all(stream, &encode(&Response::error(code, why), false, false)),
            )
            .await;
            return End::Rejected;
        }
        if let Body::Length(n) = head.body
            && n > 0
        {
            let expect_continue = head.expect_continue && buf.is_empty();
            let body = async {
                if expect_continue {
                    write_all(stream, b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                }
                skip_body(stream, &mut buf, n).await
            };
            match timeout_at(deadline, body).await {
                Err(_) => {
                    send_now(stream, &Response::error(408, "request timeout"), true);
                    return End::TimedOut;
                }
                Ok(Err(_)) => return End::Done,
                Ok(Ok(())) => {}
            }
        }

        // Complete: a worker answers it (never cut to make room meanwhile).
        lock(&ctx.conns).set_busy(reg.id);
        let request = Request {
            method: head.method,
            path: head.path,
            received: std::time::Instant::now(),
        };
        let (reply, answer) = oneshot::channel();
        let queued = timeout_at(deadline, ctx.jobs.send(Job { request, reply })).await;
        let (response, keep_alive) = match queued {
            Ok(Ok(())) => match answer.await {
                Ok(r) => (r, head.keep_alive),
                // The workers are gone: the server is stopping.
                Err(_) => return End::Done,
            },
            Ok(Err(_)) => return End::Done,
            // No worker took it within its deadline.
            Err(_) => (Response::error(503, "busy"), false),
        };
        // Taking the answer has a deadline of its own; a client that does not read may be cut.
        let write_deadline = Instant::now() + timeout;
        lock(&ctx.conns).set_waiting(reg.id, write_deadline);
        let bytes = encode(&response, head.head_only, keep_alive);
        match timeout_at(write_deadline, write_all(stream, &bytes)).await {
            Err(_) => return End::TimedOut,
            Ok(Err(_)) => return End::Done,
            Ok(Ok(())) => {}
        }
        if !keep_alive {
            return End::Done;
        }
        // The next request: idle time and all, within one client timeout.
        deadline = Instant::now() + timeout;
        lock(&ctx.conns).set_waiting(reg.id, deadline);
    }
}

/// Close gently: stop sending and drop what the client still sends for a moment, so that
/// unread input does not turn the close into a reset that destroys the answer.
async fn linger(stream: &TcpStream, until: Instant) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let _ = timeout_at(until, async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            let mut sink = [0u8; 1024];
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// A response written without waiting (best effort: a few hundred bytes into an empty socket
/// buffer), for a client already out of time.
fn send_now(stream: &TcpStream, response: &Response, close: bool) {
    let _ = stream.try_write(&encode(response, false, !close));
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read more into `buf`; an error at the end of the stream.
async fn fill(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        stream.readable().await?;
        let mut chunk = [0u8; 4096];
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

async fn read_head(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Parsed> {
    loop {
        if let Some(parsed) = parse(buf) {
            return Ok(parsed);
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Parsed::Rejected(431, "request head too large"));
        }
        fill(stream, buf).await?;
    }
}

async fn skip_body(stream: &TcpStream, buf: &mut Vec<u8>, mut left: usize) -> std::io::Result<()> {
    loop {
        let n = left.min(buf.len());
        buf.drain(..n);
        left -= n;
        if left == 0 {
            return Ok(());
        }
        fill(stream, buf).await?;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Body {
    None,
    Length(usize),
    Chunked,
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    keep_alive: bool,
    head_only: bool,
    body: Body,
    expect_continue: bool,
    /// Bytes of `buf` the head took (leading empty lines included).
    length: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Head(Head),
    Rejected(u16, &'static str),
}

/// `tchar` of RFC 9110: what methods and header names are made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A head from the start of `buf`: `None` while incomplete (and not yet wrong).
fn parse(buf: &[u8]) -> Option<Parsed> {
    // Empty lines before a request are ignored (RFC 9112 §2.2).
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let data = &buf[skip..];
    // Not HTTP as soon as the first bytes say so (a TLS hello, garbage).
    if let Some(bad) = data.iter().position(|b| !is_tchar(*b))
        && (bad == 0 || data[bad] != b' ')
    {
        return Some(Parsed::Rejected(400, "bad request"));
    }
    let end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 2)
        .into_iter()
        .chain(data.windows(3).position(|w| w == b"\n\r\n").map(|i| i + 3))
        .min()?;
    let Ok(text) = std::str::from_utf8(&data[..end]) else {
        return Some(Parsed::Rejected(400, "bad request"));
    };
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let bad = || Some(Parsed::Rejected(400, "bad request"));
    let line = lines.next()?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad();
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return bad();
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return bad();
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => {
            return Some(Parsed::Rejected(505, "HTTP version not supported"));
        }
        _ => return bad(),
    };
    // origin-form `/p?q`, absolute-form `http://host/p?q`, or `*`.
    let path = match target.find("://") {
        Some(i) if !target.starts_with('/') => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |p| &rest[p..])
        }
        _ => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or("").to_owned();
    let (mut close, mut keep) = (false, false);
    let mut body = Body::None;
    let mut length: Option<usize> = None;
    let mut expect_continue = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return bad();
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return bad();
        }
        let value = value.trim_matches([' ', '\t']);
        match name.to_ascii_lowercase().as_str() {
            "connection" => {
                for token in value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                    close |= token == "close";
                    keep |= token == "keep-alive";
                }
            }
            "content-length" => {
                let Ok(n) = value.parse::<usize>() else {
                    return bad();
                };
                if length.is_some_and(|l| l != n) {
                    return bad();
                }
                length = Some(n);
            }
            "transfer-encoding" => body = Body::Chunked,
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if body != Body::Chunked
        && let Some(n) = length
    {
        body = Body::Length(n);
    }
    Some(Parsed::Head(Head {
        head_only: method == "HEAD",
        method: method.to_owned(),
        path,
        keep_alive: !close && (http11 || keep),
        body,
        expect_continue,
        length: skip + end,
    }))
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The bytes of a response, in one buffer (one write: no delayed-ACK stall).
fn encode(response: &Response, head_only: bool, keep_alive: bool) -> Vec<u8> {
    use std::fmt::Write;
    let shared = response.shared.as_deref().unwrap_or_default();
    let length = shared.len() + response.body.len();
    let mut head = String::with_capacity(256 + if head_only { 0 } else { length });
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n",
        response.code,
        reason(response.code),
        response.content_type,
        length,
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in &response.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    if !head_only {
        head.push_str(shared);
        head.push_str(&response.body);
    }
    head.into_bytes()
}

/// Where a listener is reached from this host (`0.0.0.0` → `127.0.0.1`).
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        match parse(raw.as_bytes()) {
            Some(Parsed::Head(h)) => h,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn rejected(raw: &[u8]) -> u16 {
        match parse(raw) {
            Some(Parsed::Rejected(code, _)) => code,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn requests_are_parsed_with_their_framing() {
        let h = head("GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET");
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.keep_alive, h.length),
            ("GET", "/healthz", true, 38)
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert_eq!(head("GET http://h:1/metrics HTTP/1.1\n\n").path, "/metrics");
        assert_eq!(head("\r\nHEAD / HTTP/1.1\r\n\r\n").length, 21);
        assert!(head("HEAD / HTTP/1.1\r\n\r\n").head_only);
        let post = head("POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!((post.body, post.expect_continue), (Body::Length(5), true));
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").body,
            Body::Chunked
        );
    }

    #[test]
    fn incomplete_heads_wait_and_wrong_ones_are_rejected_early() {
        assert_eq!(parse(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(parse(b"GE"), None);
        assert_eq!(rejected(b"\x16\x03\x01\x02\x00"), 400, "TLS");
        assert_eq!(rejected(b"\x01\x02garbage 0 \x7f\r\n\r\n"), 400);
        assert_eq!(rejected(b" GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(rejected(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(rejected(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), 400);
        assert_eq!(rejected(b"GET /a b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
    }

    #[test]
    fn at_the_cap_the_nearest_deadline_goes_and_busy_ones_stay() {
        let now = Instant::now();
        let mut conns = Conns::default();
        for (id, secs) in [(0, 3), (1, 1), (2, 2)] {
            conns.insert(id, now + Duration::from_secs(secs));
        }
        conns.set_busy(1);
        assert_eq!(conns.busy, 1);
        assert!(conns.evict_oldest());
        assert_eq!(
            conns.entries[&2].state,
            State::Evicted,
            "2 s is the nearest deadline of those waiting"
        );
        // A cut connection stays cut whatever its task still reports.
        conns.set_waiting(2, now);
        conns.set_busy(2);
        assert_eq!(
            (conns.entries[&2].state, conns.evicting),
            (State::Evicted, 1)
        );
        conns.remove(2);
        assert!(conns.evict_oldest());
        assert_eq!(conns.entries[&0].state, State::Evicted);
        assert!(!conns.evict_oldest(), "the busy one is never cut");
        conns.set_waiting(1, now + Duration::from_secs(9));
        assert_eq!(conns.busy, 0);
        conns.remove(0);
        conns.remove(1);
        assert_eq!((conns.open, conns.busy, conns.evicting), (0, 0, 0));
        assert!(conns.waiting.is_empty() && conns.entries.is_empty());
    }
}
