//! Byte-stream plumbing shared by the mail protocols: a boxed stream that
//! may be plain TCP or TLS (so STARTTLS/STLS can swap it), and a line reader
//! that never holds more than its limit in memory.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type BoxIo = Box<dyn Io>;

pub enum Line {
    Ok(Vec<u8>),
    /// The line went past the limit and was dropped; the flag says whether
    /// it ended in CRLF (so SMTP DATA still knows where lines start).
    TooLong(bool),
    Eof,
}

/// Reads one line (up to and including LF). The rest of an overlong line is
/// read and thrown away, so a client cannot make us allocate without bound.
pub async fn read_line(io: &mut BufReader<BoxIo>, max: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let mut too_long = false;
    let mut prev_cr = false;
    loop {
        let avail = io.fill_buf().await?;
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..=i], true),
            None => (avail, false),
        };
        let n = chunk.len();
        let crlf = done && ((n >= 2 && chunk[n - 2] == b'\r') || (n == 1 && prev_cr));
        prev_cr = chunk.last() == Some(&b'\r');
        if !too_long && buf.len() + n <= max {
            buf.extend_from_slice(chunk);
        } else {
            too_long = true;
        }
        io.consume(n);
        if done {
            return Ok(if too_long {
                Line::TooLong(crlf)
            } else {
                Line::Ok(buf)
            });
        }
    }
}

/// The session's stream, or an error if a failed TLS upgrade consumed it.
pub fn live(io: &mut Option<BufReader<BoxIo>>) -> std::io::Result<&mut BufReader<BoxIo>> {
    io.as_mut()
        .ok_or_else(|| std::io::Error::other("stream lost after a failed TLS upgrade"))
}

/// Writes a whole reply and flushes it, so a pipelining client sees it now.
pub async fn write_flush(io: &mut BufReader<BoxIo>, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    io.get_mut().write_all(bytes).await?;
    io.get_mut().flush().await
}

/// Turns a session's plain stream into TLS after STARTTLS (SMTP, RFC
/// 3207), STARTTLS (IMAP, RFC 9051 §6.2.1) or STLS (POP3, RFC 2595), once
/// the protocol's "go ahead" reply is written and flushed. Whatever the
/// client pipelined after the command in plain text is in the reader's
/// buffer and is dropped here, never read as if it came over TLS (the
/// STARTTLS command injection, CVE-2011-0411): the rule lives in this one
/// place for all three. Ok(false) when the handshake failed or timed out;
/// the stream is gone then and the session ends.
pub async fn upgrade_tls(
    io: &mut Option<BufReader<BoxIo>>,
    acceptor: &tokio_rustls::TlsAcceptor,
    limit: std::time::Duration,
    peer: std::net::SocketAddr,
) -> std::io::Result<bool> {
    let Some(reader) = io.take() else {
        return Ok(false);
    };
    let plain = reader.into_inner();
    match tokio::time::timeout(limit, acceptor.accept(plain)).await {
        Ok(Ok(tls)) => {
            *io = Some(BufReader::new(Box::new(tls)));
            Ok(true)
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            Ok(false)
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            Ok(false)
        }
    }
}

/// How long closing may wait for the peer to take our last bytes.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends the connection in order: on TLS a `close_notify` alert (RFC 8446
/// §6.1), so the client can tell our close from a truncation attack, then
/// TCP FIN. Bounded, since a peer that stopped reading must not hold the
/// session open.
pub async fn close(io: &mut Option<BufReader<BoxIo>>) {
    use tokio::io::AsyncWriteExt;
    if let Some(io) = io.as_mut() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.get_mut().shutdown()).await;
    }
}

/// A stream that speaks raw DEFLATE (RFC 1951) both ways over another, for
/// IMAP COMPRESS=DEFLATE (RFC 4978). Reads come through the old reader, so
/// compressed bytes the client sent right after the command (already in its
/// buffer) are not lost; each flush ends a deflate block with a sync flush
/// (RFC 4978 §4), so a reply is never left waiting in the compressor;
/// shutdown ends the deflate stream before the TLS close_notify.
pub fn deflate(io: BufReader<BoxIo>) -> BufReader<BoxIo> {
    let (r, w) = tokio::io::split(io);
    BufReader::new(Box::new(Deflated {
        r: async_compression::tokio::bufread::DeflateDecoder::new(BufReader::new(r)),
        w: async_compression::tokio::write::DeflateEncoder::new(w),
    }))
}

struct Deflated<R, W> {
    r: R,
    w: W,
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for Deflated<R, W> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.r).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for Deflated<R, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.w).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.w).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.w).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Plain text pipelined after STARTTLS never reaches the session as
    /// if it had come over TLS; the first line read after the upgrade is
    /// the first one the client sent encrypted.
    #[tokio::test]
    async fn upgrade_drops_pipelined_plaintext() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let sc = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let cc = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let mut io: Option<BufReader<BoxIo>> = Some(BufReader::new(Box::new(server)));
        // The command and an injected line arrive in one segment.
        client
            .write_all(b"STARTTLS\r\nRCPT TO:<injected@evil.test>\r\n")
            .await
            .unwrap();
        let first = read_line(live(&mut io).unwrap(), 1000).await.unwrap();
        assert!(matches!(first, Line::Ok(ref l) if l == b"STARTTLS\r\n"));
        let client_side = tokio::spawn(async move {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(cc));
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            // The injected bytes are still unread on the wire side of the
            // server's buffer; the handshake follows them.
            let mut tls = connector.connect(name, client).await.unwrap();
            tls.write_all(b"EHLO over.tls\r\n").await.unwrap();
            tls.flush().await.unwrap();
            let mut buf = [0u8; 1];
            let _ = tls.read(&mut buf).await;
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
        let peer = "127.0.0.1:1".parse().unwrap();
        let up = upgrade_tls(&mut io, &acceptor, std::time::Duration::from_secs(5), peer)
            .await
            .unwrap();
        assert!(up, "the handshake went through");
        let next = read_line(live(&mut io).unwrap(), 1000).await.unwrap();
        assert!(
            matches!(next, Line::Ok(ref l) if l == b"EHLO over.tls\r\n"),
            "the plaintext line was read as if it came over TLS"
        );
        close(&mut io).await;
        client_side.await.unwrap();
    }
}
