//! The command line. Admin commands print one line per row on success and a
//! one-line `error: ...` with a non-zero exit on failure. Each command is a
//! single core call, and each core call one transaction, so a failure
//! leaves nothing half-written. Passwords come from a prompt or stdin,
//! never from argv, where `ps` and shell history would show them.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mailcore::{Core, CoreOptions, Role};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "tern",
    version,
    about = "Tern: webmail and mail server in one binary"
)]
pub struct Cli {
    /// Config file (default: ./tern.toml if it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Manage mail domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage aliases.
    #[command(subcommand)]
    Alias(AliasCmd),
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    Add {
        domain: String,
    },
    List,
    /// Remove a domain with its accounts, their mail and its aliases.
    Remove {
        domain: String,
    },
    /// Send mail for unknown addresses to an account, or `none` to refuse it.
    SetCatchall {
        domain: String,
        local_part: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add an account; the password is read from a prompt or stdin.
    Add {
        address: String,
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Change a password, read from a prompt or stdin.
    Passwd {
        address: String,
    },
    List {
        domain: Option<String>,
    },
    Remove {
        address: String,
    },
    SetRole {
        address: String,
        role: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AliasCmd {
    /// Add an alias: mail to ADDRESS goes to every TARGET.
    Add {
        address: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    List {
        domain: Option<String>,
    },
    /// Remove an alias, or only one of its targets.
    Remove {
        address: String,
        target: Option<String>,
    },
}

pub async fn run(cli: Cli) -> Result<(), String> {
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => crate::serve::serve(cfg).await,
        Command::Domain(c) => domain(&open(&cfg).await?, c).await,
        Command::User(c) => user(&open(&cfg).await?, c).await,
        Command::Alias(c) => alias(&open(&cfg).await?, c).await,
    }
}

pub async fn open(cfg: &Config) -> Result<Core, String> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
    Core::open(CoreOptions::new(cfg.database_url()))
        .await
        .map_err(|e| e.to_string())
}

fn e(err: mailcore::CoreError) -> String {
    err.to_string()
}

async fn domain(core: &Core, cmd: DomainCmd) -> Result<(), String> {
    match cmd {
        DomainCmd::Add { domain } => {
            let d = core.add_domain(&domain).await.map_err(e)?;
            println!("added domain {}", d.name);
        }
        DomainCmd::List => {
            for d in core.list_domains().await.map_err(e)? {
                match d.catchall {
                    Some(c) => println!("{}\tcatchall={c}@{}", d.name, d.name),
                    None => println!("{}", d.name),
                }
            }
        }
        DomainCmd::Remove { domain } => {
            core.remove_domain(&domain).await.map_err(e)?;
            println!("removed domain {domain}");
        }
        DomainCmd::SetCatchall { domain, local_part } => {
            let lp = (!local_part.eq_ignore_ascii_case("none")).then_some(local_part.as_str());
            core.set_catchall(&domain, lp).await.map_err(e)?;
            match lp {
                Some(lp) => println!("catchall for {domain} is now {lp}@{domain}"),
                None => println!("catchall for {domain} removed"),
            }
        }
    }
    Ok(())
}

async fn user(core: &Core, cmd: UserCmd) -> Result<(), String> {
    match cmd {
        UserCmd::Add { address, role } => {
            let role = Role::parse(&role).map_err(e)?;
            let pw = read_password(&address)?;
            let a = core.add_account(&address, &pw, role).await.map_err(e)?;
            println!("added {} ({})", a.address, a.role.as_str());
        }
        UserCmd::Passwd { address } => {
            if core.account(&address).await.map_err(e)?.is_none() {
                return Err(format!("account {address} not found"));
            }
            let pw = read_password(&address)?;
            core.set_password(&address, &pw).await.map_err(e)?;
            println!("password changed for {address}");
        }
        UserCmd::List { domain } => {
            for a in core.list_accounts(domain.as_deref()).await.map_err(e)? {
                let quota = if a.quota_bytes > 0 {
                    format!("{}/{}", a.used_bytes, a.quota_bytes)
                } else {
                    format!("{}/unlimited", a.used_bytes)
                };
                let state = if a.disabled { "\tdisabled" } else { "" };
                println!("{}\t{}\t{quota}{state}", a.address, a.role.as_str());
            }
        }
        UserCmd::Remove { address } => {
            core.remove_account(&address).await.map_err(e)?;
            println!("removed {address}");
        }
        UserCmd::SetRole { address, role } => {
            let role = Role::parse(&role).map_err(e)?;
            core.set_role(&address, role).await.map_err(e)?;
            println!("{address} is now {}", role.as_str());
        }
    }
    Ok(())
}

async fn alias(core: &Core, cmd: AliasCmd) -> Result<(), String> {
    match cmd {
        AliasCmd::Add { address, targets } => {
            let a = core.add_alias(&address, &targets).await.map_err(e)?;
            println!("{} -> {}", a.address, a.targets.join(", "));
        }
        AliasCmd::List { domain } => {
            for a in core.list_aliases(domain.as_deref()).await.map_err(e)? {
                println!("{}\t{}", a.address, a.targets.join(", "));
            }
        }
        AliasCmd::Remove { address, target } => {
            core.remove_alias(&address, target.as_deref())
                .await
                .map_err(e)?;
            println!("removed alias {address}");
        }
    }
    Ok(())
}

/// Reads a password: twice at a terminal prompt, or the first line of stdin
/// when piped (`printf '%s\n' "$pw" | tern user add ...`).
fn read_password(address: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("Password for {address}: "))
            .map_err(|e| e.to_string())?;
        let b = rpassword::prompt_password("Repeat it: ").map_err(|e| e.to_string())?;
        if a != b {
            return Err("the passwords differ".into());
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading password from stdin: {e}"))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        if pw.is_empty() {
            return Err("no password on stdin".into());
        }
        Ok(pw)
    }
}
