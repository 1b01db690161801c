//! ManageSieve (RFC 5804) over a real socket with STARTTLS: the same
//! scripts the webmail's Rules page edits, put, listed, activated, read
//! back, renamed and deleted by a client, and the active one filing mail
//! that then arrives over SMTP.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

struct Sieve {
    r: BufReader<Box<dyn Stream>>,
    plain: Option<TcpStream>,
}

impl Sieve {
    fn connect(port: u16) -> (Sieve, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let plain = s.try_clone().ok();
        let mut c = Sieve {
            r: BufReader::new(Box::new(s)),
            plain,
        };
        let greet = c.response();
        (c, greet)
    }

    /// Lines up to and including the one that starts OK, NO or BYE; a
    /// literal's octets are read whole.
    fn response(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if let Some(n) = line
                .trim_end()
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .and_then(|n| n.parse::<usize>().ok())
            {
                let mut buf = vec![0u8; n];
                self.r.read_exact(&mut buf).unwrap();
                all.push_str(&String::from_utf8_lossy(&buf));
                continue;
            }
            if ["OK", "NO", "BYE"].iter().any(|k| line.starts_with(k)) {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        let w = self.r.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        w.flush().unwrap();
        self.response()
    }

    fn put(&mut self, name: &str, script: &str) -> String {
        self.cmd(&format!(
            "PUTSCRIPT \"{name}\" {{{}+}}\r\n{script}",
            script.len()
        ))
    }

    fn starttls(mut self, cert: &std::path::Path) -> (Sieve, String) {
        assert!(self.cmd("STARTTLS").starts_with("OK"));
        let sock = self.plain.take().unwrap();
        let mut c = Sieve {
            r: BufReader::new(wrap_tls(sock, cert)),
            plain: None,
        };
        let caps = c.response();
        (c, caps)
    }
}

fn plain(user: &str, pw: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_desktop_client_manages_the_scripts_that_file_arriving_mail() {
    let t = start(&[]);
    let (mut c, greet) = Sieve::connect(t.sieve);
    assert!(greet.contains("\"IMPLEMENTATION\" \"Tern\"\r\n"), "{greet}");
    assert!(
        greet.contains("\"SASL\" \"\"\r\n"),
        "no mechanism before TLS: {greet}"
    );
    assert!(greet.contains("\"STARTTLS\"\r\n"), "{greet}");
    assert!(
        greet.contains("fileinto") && greet.contains("vacation"),
        "{greet}"
    );
    assert!(
        greet.ends_with("OK \"Tern ManageSieve ready\"\r\n"),
        "{greet}"
    );
    let r = c.cmd(&format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"",
        plain("bob@example.test", PW)
    ));
    assert!(r.starts_with("NO (ENCRYPT-NEEDED)"), "{r}");
    assert!(
        c.cmd("LISTSCRIPTS").starts_with("NO"),
        "nothing before login"
    );

    let (mut c, caps) = c.starttls(&t.cert());
    assert!(caps.contains("\"SASL\" \"PLAIN\"\r\n"), "{caps}");
    assert!(!caps.contains("\"STARTTLS\""), "{caps}");
    let r = c.cmd(&format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"",
        plain("bob@example.test", "wrong")
    ));
    assert!(r.starts_with("NO"), "{r}");
    // Without an initial response: an empty challenge, then the answer.
    let w = c.r.get_mut();
    w.write_all(b"AUTHENTICATE \"PLAIN\"\r\n").unwrap();
    w.flush().unwrap();
    let mut challenge = String::new();
    c.r.read_line(&mut challenge).unwrap();
    assert_eq!(challenge, "\"\"\r\n");
    let r = c.cmd(&format!("\"{}\"", plain("bob@example.test", PW)));
    assert!(r.starts_with("OK"), "{r}");

    // A script with an error is refused with its line; a good one kept.
    let r = c.put("broken", "require \"fileinto\";\nfileinto \"Archive\"\n");
    assert!(r.starts_with("NO \"line 3"), "{r}");
    let script = "require [\"fileinto\"];\r\nif header :contains \"subject\" \"[list]\" { fileinto \"Archive\"; }\r\n";
    assert!(c.put("lists", script).starts_with("OK"));
    assert!(c.put("other", "keep;\r\n").starts_with("OK"));
    assert!(c.cmd("CHECKSCRIPT {6+}\r\nkeep;\n").starts_with("OK"));
    assert!(c.cmd("CHECKSCRIPT {5+}\r\nkeep\n").starts_with("NO"));
    assert_eq!(
        c.cmd("LISTSCRIPTS"),
        "\"lists\"\r\n\"other\"\r\nOK \"Listed\"\r\n"
    );
    assert!(c.cmd("SETACTIVE \"lists\"").starts_with("OK"));
    assert_eq!(
        c.cmd("LISTSCRIPTS"),
        "\"lists\" ACTIVE\r\n\"other\"\r\nOK \"Listed\"\r\n"
    );
    let got = c.cmd("GETSCRIPT \"lists\"");
    assert_eq!(
        got,
        format!("{{{}}}\r\n{script}\r\nOK \"Got it\"\r\n", script.len())
    );
    assert!(c.cmd("GETSCRIPT \"nope\"").starts_with("NO (NONEXISTENT)"));
    assert!(c.cmd("DELETESCRIPT \"lists\"").starts_with("NO (ACTIVE)"));
    assert!(
        c.cmd("RENAMESCRIPT \"other\" \"lists\"")
            .starts_with("NO (ALREADYEXISTS)")
    );
    assert!(c.cmd("RENAMESCRIPT \"other\" \"spare\"").starts_with("OK"));
    assert!(c.cmd("DELETESCRIPT \"spare\"").starts_with("OK"));
    assert!(
        c.cmd("HAVESPACE \"x\" 100000000")
            .starts_with("NO (QUOTA/MAXSIZE)")
    );
    assert!(c.cmd("HAVESPACE \"x\" 1000").starts_with("OK"));
    assert_eq!(c.cmd("NOOP \"t1\""), "OK (TAG \"t1\") \"Done\"\r\n");

    // The active script runs on mail arriving over SMTP.
    run_python(&format!(
        r#"
import smtplib
with smtplib.SMTP("127.0.0.1", {mx}) as s:
    s.sendmail("ann@out.example", ["bob@example.test"], "Subject: [list] weekly\r\n\r\nnews\r\n")
    s.sendmail("ann@out.example", ["bob@example.test"], "Subject: personal\r\n\r\nhi\r\n")
"#,
        mx = t.mx
    ));
    t.settle();
    let archive = t.folder("bob@example.test", "Archive").await;
    assert_eq!(archive.len(), 1);
    assert!(String::from_utf8_lossy(&archive[0]).contains("Subject: [list] weekly"));
    let inbox = t.inbox("bob@example.test").await;
    assert_eq!(inbox.len(), 1);

    // The webmail shows it as a script written in Sieve.
    let cookie = web_login(t.web, "bob@example.test", PW).unwrap();
    let (_, page) = http_get(t.web, "/rules", Some(&cookie));
    assert!(page.contains("written in Sieve"), "{page}");
    assert!(page.contains("if header :contains"), "{page}");

    // Deactivated, nothing runs.
    assert!(c.cmd("SETACTIVE \"\"").starts_with("OK"));
    assert_eq!(c.cmd("LISTSCRIPTS"), "\"lists\"\r\nOK \"Listed\"\r\n");
    assert!(c.cmd("LOGOUT").starts_with("OK"));
}
