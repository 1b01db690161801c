//! `tern`: the whole mail host in one binary.
//!
//! `tern serve` starts the web server (webmail, admin, /healthz) and, as
//! their issues land, the SMTP, IMAP and POP3 listeners. The other
//! subcommands administer domains, users and aliases from the shell,
//! talking to the same database through the mail core.

use tern::cli;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // The server logs at info; a one-shot admin command only warns, so its
    // output is what it prints (the audit log keeps the record).
    let serving = matches!(args.command, None | Some(cli::Command::Serve));
    let default = if serving {
        "info,sqlx=warn,sea_orm=warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // TERN_LOG_FORMAT=json: one JSON object per line, its fields at the top
    // level, for a log pipeline (jq, Loki, Elasticsearch) to follow a
    // message by its message_id or queue_id.
    if std::env::var("TERN_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    // A panic in a session task would otherwise end that task with only
    // the default hook's stderr text; put it in the log with its place.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic");
        default_hook(info);
    }));
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
