//! `keygate ca init | path | export`.

use std::io::Write;

use anyhow::Context;
use keygate::ca::{self, Ca, InitOutcome};
use keygate::home::Home;

use super::Failure;
use crate::cli::CaCommand;

pub fn run(home: &Home, cmd: CaCommand) -> Result<(), Failure> {
    match cmd {
        CaCommand::Init { force } => init(home, force),
        CaCommand::Path { bundle } => path(home, bundle),
        CaCommand::Export { out } => export(home, &out),
    }
}

fn init(home: &Home, force: bool) -> Result<(), Failure> {
    let outcome = Ca::init(home, force)?;
    let ca = Ca::load(home)?;
    ca::write_bundle(home, &ca)?;
    let cert = home.ca_cert().display().to_string();
    match outcome {
        InitOutcome::Kept => eprintln!("keygate: CA already present (use --force to rotate it)"),
        InitOutcome::Created => eprintln!("keygate: created a new CA"),
        InitOutcome::Rotated => eprintln!(
            "keygate: rotated the CA; clients that trusted the old one must trust {cert} again"
        ),
    }
    println!("{cert}");
    Ok(())
}

/// Loads the CA, creating it on first use, and says so on stderr.
pub fn ensure_ca(home: &Home) -> Result<Ca, Failure> {
    let (ca, created) = Ca::load_or_create(home)?;
    if created {
        eprintln!("keygate: created a new CA in {}", home.ca_dir().display());
    }
    ca::write_bundle(home, &ca)?;
    Ok(ca)
}

fn path(home: &Home, bundle: bool) -> Result<(), Failure> {
    ensure_ca(home)?;
    let path = if bundle {
        home.bundle()
    } else {
        home.ca_cert()
    };
    println!("{}", path.display());
    Ok(())
}

fn export(home: &Home, out: &std::path::Path) -> Result<(), Failure> {
    let ca = ensure_ca(home)?;
    if out.as_os_str() == "-" {
        std::io::stdout().write_all(ca.cert_pem().as_bytes())?;
        return Ok(());
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    keygate::home::write_atomic(
        out,
        ca.cert_pem().as_bytes(),
        keygate::home::PUBLIC_FILE_MODE,
    )
    .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "keygate: wrote the CA certificate (no key) to {}",
        out.display()
    );
    Ok(())
}
