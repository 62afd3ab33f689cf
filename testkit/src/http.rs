//! The check behind the `http_requests` fuzz target: the relay's request
//! counter on arbitrary bytes and on generated request pipelines.

use portd_serve::relay::RequestCounter;

/// Feeds `bytes` to a new counter in pieces of the given sizes (cycled,
/// 0 read as 1); returns the count and whether it still counts.
fn feed(bytes: &[u8], sizes: &[usize]) -> (u64, bool) {
    let mut c = RequestCounter::new();
    let (mut n, mut rest, mut i) = (0, bytes, 0);
    while !rest.is_empty() {
        let k = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(1).clamp(1, rest.len());
        n += c.feed(&rest[..k]);
        rest = &rest[k..];
        i += 1;
    }
    (n, c.counting())
}

/// Arbitrary bytes as what a client sends: the counter never panics, gives
/// the same answer however the bytes are split into reads, and counts at
/// most one request per two line feeds (a request line and the empty line
/// that ends its head). Then the same bytes describe a pipeline of
/// well-formed requests (methods, bodies framed by length or chunks, bare
/// or CR line ends, an `Upgrade` that ends the counting): the counter
/// finds exactly the requests up to the first upgrade, split anyhow.
pub fn http_requests(bytes: &[u8]) {
    let sizes: Vec<usize> = bytes.iter().map(|&b| usize::from(b % 23)).collect();
    let whole = feed(bytes, &[bytes.len()]);
    assert_eq!(feed(bytes, &[1]), whole, "byte by byte");
    assert_eq!(feed(bytes, &sizes), whole, "in pieces {sizes:?}");
    let lf = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(whole.0 * 2 <= lf, "{} requests from {lf} line feeds", whole.0);

    let (text, expected) = pipeline(bytes);
    let got = feed(&text, &[text.len()]);
    assert_eq!(got.0, expected, "{:?}", String::from_utf8_lossy(&text));
    assert_eq!(feed(&text, &[1]), got, "byte by byte");
    assert_eq!(feed(&text, &sizes), got, "in pieces {sizes:?}");
}

/// Well-formed requests described by `bytes`, one per byte, and how many
/// of them count.
fn pipeline(bytes: &[u8]) -> (Vec<u8>, u64) {
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
    // Bodies that look like requests: skipped, never counted.
    const DECOY: &[u8] = b"GET /decoy HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n";
    let mut text = Vec::new();
    let mut counted = 0;
    let mut stopped = false;
    for (i, &b) in bytes.iter().enumerate() {
        let eol: &[u8] = if b & 0x80 != 0 { b"\n" } else { b"\r\n" };
        let line = |text: &mut Vec<u8>, s: &[u8]| {
            text.extend_from_slice(s);
            text.extend_from_slice(eol);
        };
        let method = METHODS[usize::from(b) % METHODS.len()];
        line(&mut text, format!("{method} /r{i}?q=%20 HTTP/1.{}", b & 1).as_bytes());
        line(&mut text, b"Host: localhost");
        let len = usize::from(b) % DECOY.len();
        match (b >> 3) % 4 {
            0 => line(&mut text, b"X-Empty:"),
            1 => line(&mut text, format!("content-length: {len}").as_bytes()),
            2 => line(&mut text, b"Transfer-Encoding: chunked"),
            _ => {
                line(&mut text, b"Upgrade: websocket");
                line(&mut text, b"Connection: Upgrade");
            }
        }
        line(&mut text, b"");
        match (b >> 3) % 4 {
            1 => text.extend_from_slice(&DECOY[..len]),
            2 => {
                for part in DECOY[..len].chunks(usize::from(b % 5) + 1) {
                    line(&mut text, format!("{:x};ext=\"a\"", part.len()).as_bytes());
                    text.extend_from_slice(part);
                    line(&mut text, b"");
                }
                line(&mut text, b"0");
                if b & 2 != 0 {
                    line(&mut text, b"X-Trailer: 1");
                }
                line(&mut text, b"");
            }
            3 if !stopped => {
                // What follows an upgrade is another protocol.
                text.extend_from_slice(&DECOY[..len]);
                counted += 1;
                stopped = true;
            }
            _ => {}
        }
        if !stopped && (b >> 3) % 4 != 3 {
            counted += 1;
        }
    }
    (text, counted)
}
