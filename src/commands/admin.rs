//! `keygate admin token`: the URL of the dashboard, with the admin token.

use anyhow::anyhow;
use keygate::home::Home;

use super::{Failure, admin_token, load_config};
use crate::cli::AdminCommand;

pub fn run(home: &Home, cmd: AdminCommand) -> Result<(), Failure> {
    match cmd {
        AdminCommand::Token { raw } => token(home, raw),
    }
}

fn token(home: &Home, raw: bool) -> Result<(), Failure> {
    let config = load_config(home, Default::default())?;
    let token = admin_token()?;
    if raw {
        println!("{}", token.expose());
        return Ok(());
    }
    let Some(addr) = config.admin_listen else {
        return Err(Failure::usage(anyhow!(
            "the admin API listens on TCP only when keygate.yaml sets admin.listen, e.g. `admin: {{ listen: 127.0.0.1:8878 }}` (then restart keygate); without it, use the Unix socket: curl --unix-socket {} http://keygate/api/flows",
            home.admin_socket().display()
        )));
    };
    if addr.port() == 0 {
        eprintln!(
            "keygate: admin.listen has port 0: keygate picks the port at start and prints it; put that port in this URL"
        );
    }
    println!("http://{addr}/?token={}", token.expose());
    Ok(())
}
