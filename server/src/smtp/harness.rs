//! Drives one whole SMTP session from a byte string, in memory: the
//! client's bytes go in through a duplex pipe, the server's replies come
//! back. The session fuzz target (fuzz/fuzz_targets/smtp_session.rs) and
//! the bounded corpus test below share it, so what a client can reach past
//! the parser (BDAT sizes, DATA framing, AUTH exchanges) is exercised
//! without sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailcore::Core;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{Mode, Session, Settings};
use crate::limits::Limits;
use crate::listen::Conn;

/// Small limits, so a fuzz input reaches them quickly, and short timeouts,
/// so an input that stops mid-command ends the session at once.
pub fn settings() -> Arc<Settings> {
    Arc::new(Settings {
        hostname: "mx.fuzz.test".into(),
        max_message_size: 4096,
        max_recipients: 5,
        max_line: 1024,
        command_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(200),
        idle_timeout_busy: Duration::from_millis(200),
        data_timeout: Duration::from_millis(500),
        ..Settings::default()
    })
}

/// Runs a port-25 session over `input` and returns everything it wrote.
/// A panic in the session is a panic here (no task in between).
pub async fn drive(core: &Core, input: &[u8]) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = ([192, 0, 2, 1], 25000).into();
    let conn = Conn {
        io: Box::new(server),
        peer,
        secure: false,
        starttls: None,
    };
    let session = Session::new(
        core.clone(),
        settings(),
        Limits::new(10, 10, 10),
        Mode::Mx,
        conn,
    );
    let (mut rd, mut wr) = tokio::io::split(client);
    let input = input.to_vec();
    let feed = async move {
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
    };
    let mut out = Vec::new();
    let collect = async {
        let _ = rd.read_to_end(&mut out).await;
    };
    tokio::join!(session.run(), feed, collect);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn core() -> (Core, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let core = Core::open(mailcore::CoreOptions::new(url)).await.unwrap();
        core.add_domain("example.test").await.unwrap();
        core.add_account(
            "alice@example.test",
            "correct horse battery",
            mailcore::Role::User,
        )
        .await
        .unwrap();
        (core, dir)
    }

    /// The hostile corpus: each input must end the session with replies,
    /// never a panic, and the ones that matter say what they must.
    #[tokio::test]
    async fn hostile_sessions() {
        let (core, _dir) = core().await;
        let txn = "EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.test>\r\n";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // `have + size` overflowed here once.
            (
                format!("{txn}BDAT 10\r\n0123456789BDAT 18446744073709551610\r\n").into_bytes(),
                "552 5.3.4",
            ),
            (
                format!("{txn}BDAT 18446744073709551615 LAST\r\n").into_bytes(),
                "552 5.3.4",
            ),
            (
                format!(
                    "{txn}BDAT 4000\r\n{}BDAT 200 LAST\r\n{}",
                    "a".repeat(4000),
                    "b".repeat(200)
                )
                .into_bytes(),
                "552 5.3.4",
            ),
            (
                format!("{txn}BDAT 99999999999999999999999\r\n").into_bytes(),
                "501 5.5.4",
            ),
            (
                format!("{txn}MAIL FROM:<a@b.example> SIZE=18446744073709551616\r\n").into_bytes(),
                "503",
            ),
            (
                b"EHLO x\r\nMAIL FROM:<a@b.example> SIZE=18446744073709551615\r\n".to_vec(),
                "552 5.3.4",
            ),
            (
                format!("{txn}DATA\r\n{}\r\n.\r\n", "x".repeat(5000)).into_bytes(),
                "552 5.3.4",
            ),
            (
                format!("{txn}DATA\r\nSubject: a\r\n\r\nbody\n.\nnot the end\r\n.\r\n")
                    .into_bytes(),
                "250 2.0.0",
            ),
            (b"AUTH PLAIN AGFsaWNlAHg=\r\n".to_vec(), "502 5.5.1"),
            ([vec![0xff; 3000], b"\r\n".to_vec()].concat(), "500 5.5.2"),
            (b"\r\n\r\n\r\n".to_vec(), "500 5.5.1"),
            (
                b"BDAT\r\nBDAT -1\r\nBDAT 1 LAST LAST\r\n".to_vec(),
                "501 5.5.4",
            ),
        ];
        for (input, want) in cases {
            let out = drive(&core, &input).await;
            let text = String::from_utf8_lossy(&out);
            assert!(text.starts_with("220 "), "{text}");
            assert!(
                text.contains(want),
                "input {:?}: wanted {want} in {text}",
                String::from_utf8_lossy(&input[..input.len().min(120)])
            );
        }
    }
}
