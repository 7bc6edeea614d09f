//! `keygate env`: what a sandboxed agent needs, for `eval "$(keygate env)"`.

use keygate::agent::{self, Shell};
use keygate::home::Home;

use super::{Failure, load_config, load_registry};
use crate::cli::ShellArg;

pub fn run(home: &Home, shell: ShellArg) -> Result<(), Failure> {
    let config = load_config(home, Default::default())?;
    let bindings = load_registry(home)?
        .bindings()
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", home.secrets_file().display())))?;
    super::ca::ensure_ca(home)?;
    for (name, path) in super::missing_phantom_files(home, &bindings) {
        eprintln!(
            "keygate: warning: `{name}` has no phantom service-account file ({}), so GOOGLE_APPLICATION_CREDENTIALS points at nothing; `keygate secret add {name} --from-file SA.json` makes it",
            path.display()
        );
    }
    let credentials = super::credentials_for(config.listen)?;
    let env = agent::agent_env(
        config.listen,
        credentials.as_ref(),
        &home.ca_cert(),
        &home.bundle(),
        &home.phantoms_dir(),
        &bindings,
    );
    let shell = match shell {
        ShellArg::Sh => Shell::Sh,
        ShellArg::Fish => Shell::Fish,
        ShellArg::Powershell => Shell::PowerShell,
        ShellArg::Dotenv => Shell::Dotenv,
        ShellArg::Json => Shell::Json,
    };
    print!("{}", agent::render(&env, shell));
    Ok(())
}
