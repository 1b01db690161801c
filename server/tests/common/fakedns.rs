//! A DNS server on 127.0.0.1 for tests that need real DNS on the wire
//! (outside accounts' discovery, DKIM verification at a receiver).

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, TXT};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecodable, BinEncodable};

/// A DNS server on 127.0.0.1 (UDP) answering from a table; names not in it
/// are NXDOMAIN. Real DNS on the wire, so hickory in the server is the
/// resolver under test.
pub struct FakeDns {
    pub port: u16,
    records: Zone,
    /// Set the AD bit (RFC 4035 §3.2.3) on answers, as a validating
    /// resolver does for signed zones.
    pub authentic: Arc<std::sync::atomic::AtomicBool>,
    /// Names answered with SERVFAIL (a broken zone: a temporary error).
    failing: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// (lower-case name, type) -> answers.
type Zone = Arc<Mutex<HashMap<(String, RecordType), Vec<RData>>>>;

impl FakeDns {
    pub fn start() -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let records: Zone = Default::default();
        let table = records.clone();
        let authentic = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ad = authentic.clone();
        let failing: Arc<Mutex<std::collections::HashSet<String>>> = Default::default();
        let broken = failing.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    return;
                };
                let Ok(q) = Message::from_bytes(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.authoritative = true;
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                r.metadata.authentic_data = ad.load(std::sync::atomic::Ordering::SeqCst);
                let t = table.lock().unwrap();
                let mut known_name = false;
                for query in &q.queries {
                    r.add_query(query.clone());
                    let name = query
                        .name
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    known_name |= t.keys().any(|(n, _)| *n == name);
                    if let Some(v) = t.get(&(name, query.query_type)) {
                        for rd in v {
                            r.add_answer(Record::from_rdata(query.name.clone(), 60, rd.clone()));
                        }
                    }
                }
                let servfail = q.queries.iter().any(|query| {
                    broken.lock().unwrap().contains(
                        &query
                            .name
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                    )
                });
                if servfail {
                    r.answers.clear();
                    r.metadata.response_code = ResponseCode::ServFail;
                } else if !known_name {
                    r.metadata.response_code = ResponseCode::NXDomain;
                }
                drop(t);
                let _ = sock.send_to(&r.to_bytes().unwrap(), from);
            }
        });
        FakeDns {
            port,
            records,
            authentic,
            failing,
        }
    }

    pub fn add(&self, name: &str, rd: RData) {
        let t = rd.record_type();
        self.records
            .lock()
            .unwrap()
            .entry((name.to_ascii_lowercase(), t))
            .or_default()
            .push(rd);
    }

    /// Every question about `name` gets SERVFAIL.
    pub fn fail(&self, name: &str) {
        self.failing
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase());
    }

    pub fn a(&self, name: &str) {
        self.add(name, RData::A(A(Ipv4Addr::LOCALHOST)));
    }

    pub fn a_at(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, RData::A(A(ip)));
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl FakeDns {
    /// A TXT record as one or more character-strings of at most 255 bytes
    /// (what a zone file with a long DKIM key publishes).
    pub fn txt(&self, name: &str, value: &str) {
        let strings: Vec<String> = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.add(name, RData::TXT(TXT::new(strings)));
    }
}

impl FakeDns {
    /// A hickory resolver that asks this server and nothing else (the
    /// server's own resolver set-up, pointed here).
    pub fn resolver(&self) -> hickory_resolver::TokioResolver {
        tern::resolver::resolver(Some(self.addr().parse().unwrap())).unwrap()
    }
}
