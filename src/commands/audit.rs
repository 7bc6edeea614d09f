//! `keygate audit verify`: walk the audit log's hash chain (exit 0 when it holds, 1 at
//! the first broken link).

use anyhow::Context;
use keygate::audit::file::chain_files;
use keygate::audit::verify::verify;
use keygate::home::Home;

use super::Failure;
use crate::cli::AuditCommand;

pub fn run(home: &Home, cmd: AuditCommand) -> Result<u8, Failure> {
    let AuditCommand::Verify { file } = cmd;
    let path = file.unwrap_or_else(|| home.audit_log());
    if !path.is_file() {
        return Err(anyhow::anyhow!("{}: no audit log there", path.display()).into());
    }
    let files = chain_files(&path);
    let outcome = verify(&files).with_context(|| format!("reading {}", path.display()))?;
    match outcome {
        Ok(report) => {
            let names: Vec<String> = report
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            println!(
                "audit chain OK: {} lines in {} file{} ({})",
                report.lines,
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            );
            if let Some(head) = report.head {
                println!("head: sha256 {head}");
            }
            if report.starts_mid_chain {
                println!(
                    "note: the oldest file continues a chain whose earlier files were rotated away"
                );
            }
            if report.unchained > 0 {
                println!(
                    "note: {} earlier line(s) were written before the chain began and are not covered",
                    report.unchained
                );
            }
            Ok(0)
        }
        Err(broken) => {
            println!("audit chain BROKEN at {broken}");
            Ok(1)
        }
    }
}
