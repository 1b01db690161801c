//! The `tern` binary's modules, as a library so integration tests can run
//! pieces in-process (the queue runner with an injected clock and DNS).
//! The binary itself is `main.rs`.

pub mod acme;
pub mod cli;
pub mod config;
pub mod dns_check;
pub mod imap;
pub mod limits;
pub mod listen;
pub mod logins;
pub mod managesieve;
pub mod netio;
pub mod outside;
pub mod pop3;
pub mod relay;
pub mod resolver;
pub mod sasl;
pub mod serve;
pub mod smtp;
pub mod tls;
pub mod web;
