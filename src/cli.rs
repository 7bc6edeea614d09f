//! Command-line definitions (clap derive) and nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keygate::config::{Intercept, ResolveRule};
use keygate::policy::{HostPattern, Mode};

/// keygate: a local proxy that keeps real API keys out of AI agents' sandboxes.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, about, max_term_width = 100)]
pub struct Cli {
    /// State directory [default: $KEYGATE_HOME, else ~/.config/keygate]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground
    Start(StartArgs),
    /// Manage the local certificate authority
    #[command(subcommand)]
    Ca(CaCommand),
    /// Manage secrets: values in the OS keyring, metadata in secrets.yaml
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print what a sandboxed agent needs, for eval "$(keygate env)"
    Env {
        /// Output format
        #[arg(long, value_enum, default_value_t = ShellArg::Sh)]
        shell: ShellArg,
    },
    /// Run a command behind keygate: its environment only, the proxy started if needed
    Run(RunArgs),
    /// Validate the configuration and print the effective policy (exit 0 valid, 2 invalid)
    Check(CheckArgs),
    /// Read the audit log: one line per event, filtered, or followed (-f)
    Log(LogArgs),
    /// Check the audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check CA, bundle, keyring, secrets, listener, the jail and installed runtimes;
    /// say how to fix
    Doctor,
    /// Use the admin API of a running `keygate start`
    #[command(subcommand)]
    Admin(AdminCommand),
    /// A live view of a running `keygate start`'s flows and refusals (from its admin
    /// socket); q quits, r shows refusals only. Without a terminal, one line per flow
    Top(TopArgs),
    /// The jail's first process (started by `keygate run`, not by hand)
    #[command(hide = true)]
    JailInit(JailInitArgs),
}

/// `keygate audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain of the audit log (and its rotated files); exit 0 when it
    /// holds, 1 with the first broken link
    Verify {
        /// The log to check [default: $KEYGATE_HOME/audit.jsonl]; its rotated files
        /// (FILE.1, FILE.2, ...) are walked too
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// `keygate log [-f] [--json] [--host H] [--decision D] [-n N]`
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Keep reading as events are written (through rotations), until interrupted
    #[arg(short, long)]
    pub follow: bool,
    /// Print the log's own JSON lines instead of the table
    #[arg(long)]
    pub json: bool,
    /// Only events for this host or pattern, e.g. api.example.com or '*.example.com'
    /// (without a port: every port)
    #[arg(long, value_name = "PATTERN")]
    pub host: Option<HostPattern>,
    /// Only events with this decision
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// Only the last N events (that pass the filters) [default: all; with -f, 10]
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// The log to read [default: $KEYGATE_HOME/audit.jsonl]
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `keygate log --decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    /// Allowed and forwarded or tunnelled
    Allow,
    /// Refused or failed
    Deny,
    /// Allowed, TLS terminated by keygate
    Intercept,
}

/// `keygate top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one line per flow as it happens instead of the full-screen view (the
    /// default when stdout is not a terminal)
    #[arg(long)]
    pub plain: bool,
    /// Stop after this many flows (plain output)
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
}

/// `keygate admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print the dashboard's URL with the admin token (made and kept in the keyring on
    /// first use); the admin API listens on TCP when keygate.yaml sets admin.listen
    Token {
        /// Print the token alone (for `Authorization: Bearer`)
        #[arg(long)]
        raw: bool,
    },
}

/// `keygate jail-init --port P --socket S -- CMD...`
#[derive(Debug, Args)]
pub struct JailInitArgs {
    /// The relay's port on 127.0.0.1 inside the jail
    #[arg(long)]
    pub port: u16,
    /// The session listener's Unix socket
    #[arg(long)]
    pub socket: PathBuf,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// Output formats of `keygate env`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellArg {
    /// POSIX sh, bash, zsh
    Sh,
    /// fish
    Fish,
    /// PowerShell
    Powershell,
    /// .env file lines
    Dotenv,
    /// a JSON object (null = unset)
    Json,
}

/// `keygate run [--] CMD [ARGS]...`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run without the jail: the command keeps the keyring, the network and your files
    /// (for a container whose only way out is keygate)
    #[arg(long)]
    pub no_jail: bool,
    /// Also writable inside the jail (repeatable); the current directory always is
    #[arg(long, value_name = "PATH")]
    pub writable: Vec<PathBuf>,
    /// Also hidden inside the jail (repeatable)
    #[arg(long, value_name = "PATH")]
    pub hide: Vec<PathBuf>,
    /// Ask on this terminal before a request to a host that is not allowed is refused:
    /// allow once, allow always (written to keygate.yaml), or deny (network.ask for this
    /// run; no answer within network.ask_timeout refuses it)
    #[arg(long)]
    pub ask: bool,
    /// Agent profile whose state stays writable: claude, codex, gemini
    /// [default: from the command's name]
    #[arg(long, value_name = "NAME", value_parser = ["claude", "codex", "gemini"])]
    pub agent: Option<String>,
    /// Policy flags; when any is given, a private embedded proxy applies them
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret in the keyring and register it; prints the dummy the agent should
    /// hold on the last line of stdout
    Add(Box<SecretAddArgs>),
    /// List registered secrets (never their values)
    List(SecretListArgs),
    /// Remove a secret from the keyring and the registry
    Rm {
        /// Secret name
        name: String,
        /// Also delete a keyring value that this home did not register (the keyring is
        /// per user: another home may be using it)
        #[arg(long)]
        force: bool,
    },
}

/// `keygate secret list`: a table that fits 80 columns, or whole values, or JSON.
#[derive(Debug, Args)]
pub struct SecretListArgs {
    /// Print every cell whole (the table is wider than 80 columns)
    #[arg(long, conflicts_with = "json")]
    pub long: bool,
    /// Print a JSON array: each secret's registry fields and `stored` (never a value)
    #[arg(long)]
    pub json: bool,
}

/// Request bodies a secret's dummy is swapped in (`secret add --body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BodyArg {
    /// JSON bodies (the value JSON-escaped)
    Json,
    /// Form bodies, urlencoded (the value form-encoded) or multipart
    Form,
    /// Any body, the value as is
    Text,
}

/// `secret add --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A key swapped for its dummy
    Static,
    /// AWS credentials: SigV4 requests re-signed
    Aws,
    /// A Google service account: access tokens minted
    Google,
    /// OAuth2 client credentials or refresh token: access tokens minted
    Oauth2,
    /// A GitHub App installation: installation tokens minted
    GithubApp,
}

/// `secret add --grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrantArg {
    /// Client credentials (the keyring holds the client secret)
    ClientCredentials,
    /// Refresh token (the keyring holds the refresh token)
    RefreshToken,
}

/// `secret add --client-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuthArg {
    /// HTTP Basic
    Basic,
    /// In the form body
    Post,
}

/// `keygate secret add`: NAME alone uses the recipe addons/NAME.yaml for the rest.
#[derive(Debug, Args)]
pub struct SecretAddArgs {
    /// Secret name (also the recipe to use, e.g. anthropic, openai, github)
    pub name: String,
    /// Use this recipe for a new secret instead of the one named NAME, e.g.
    /// `secret add anthropic-test --recipe anthropic`
    #[arg(long, value_name = "RECIPE")]
    pub recipe: Option<String>,
    /// Host the secret may be sent to (repeatable); replaces the recipe's hosts
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Header the provider expects, e.g. authorization or x-api-key
    #[arg(long)]
    pub header: Option<String>,
    /// How the value appears in the header, e.g. 'Bearer {secret}'
    #[arg(long)]
    pub format: Option<String>,
    /// The dummy the agent holds [default: kept if the secret exists, else generated]
    #[arg(long)]
    pub dummy: Option<String>,
    /// Environment variable that `keygate env`/`run` set to the dummy
    #[arg(long)]
    pub env: Option<String>,
    /// Also swap the dummy in the URL query (`?key=DUMMY`)
    #[arg(long)]
    pub query: bool,
    /// Also swap the dummy in the WebSocket frames the client sends
    #[arg(long)]
    pub websocket: bool,
    /// Also swap the dummy in request bodies of this kind
    #[arg(long, value_enum, value_name = "KIND")]
    pub body: Option<BodyArg>,
    /// Read the value from standard input
    #[arg(long, conflicts_with_all = ["from_env", "from_file"])]
    pub stdin: bool,
    /// Read the value from this environment variable
    #[arg(long, value_name = "VAR", conflicts_with = "from_file")]
    pub from_env: Option<String>,
    /// Read the value from this file (a service-account JSON, a GitHub App .pem, AWS
    /// credentials as JSON)
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<std::path::PathBuf>,
    /// The credential kind [default: the recipe's, else static]
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Option<KindArg>,
    /// oauth2: the token endpoint (https)
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// oauth2: the client id
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// oauth2, google: a scope to ask for (repeatable)
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// oauth2: the grant keygate mints with; the keyring holds the client secret
    /// (client-credentials) or the refresh token (refresh-token)
    #[arg(long, value_enum, value_name = "GRANT")]
    pub grant: Option<GrantArg>,
    /// oauth2: how the client authenticates at the token endpoint
    #[arg(long, value_enum, value_name = "AUTH")]
    pub client_auth: Option<ClientAuthArg>,
    /// github-app: the App id (or client id)
    #[arg(long, value_name = "ID")]
    pub app_id: Option<String>,
    /// github-app: the installation id
    #[arg(long, value_name = "ID")]
    pub installation_id: Option<u64>,
    /// github-app: the API root [default: https://api.github.com]
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// aws: get the real credentials by running this credential_process-style command
    /// (split as a shell would) instead of storing them, e.g.
    /// 'aws configure export-credentials --profile dev --format process'
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["stdin", "from_env", "from_file"])]
    pub aws_command: Option<String>,
    /// Replace a keyring value that this home did not register (the keyring is per
    /// user: another home, or an earlier install, may be using it)
    #[arg(long)]
    pub force: bool,
}

/// Flags of `keygate start` (they add to or override keygate.yaml).
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Listen address [default: listen in keygate.yaml, else 127.0.0.1:8877]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Policy flags shared by `start` and `check`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Also allow this host pattern (repeatable), e.g. '*.example.com' or 'host:8443'
    #[arg(long, value_name = "PATTERN")]
    pub allow: Vec<HostPattern>,
    /// Refuse this host pattern (repeatable); deny wins over everything
    #[arg(long, value_name = "PATTERN")]
    pub deny: Vec<HostPattern>,
    /// Network mode: trusted (embedded list + allow), none or custom (allow only)
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Terminate TLS for hosts with a secret only, or for every allowed host
    #[arg(long, value_enum)]
    pub intercept: Option<InterceptArg>,
    /// Connect to IP:PORT when the upstream is HOST:PORT (repeatable); SNI and
    /// certificate checks still use HOST
    #[arg(long, value_name = "HOST:PORT=IP:PORT")]
    pub resolve: Vec<ResolveRule>,
    /// Extra trusted root for upstream verification, PEM (repeatable)
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Vec<PathBuf>,
}

impl PolicyArgs {
    /// True when no policy flag was given.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.mode.is_none()
            && self.intercept.is_none()
            && self.resolve.is_empty()
            && self.upstream_ca.is_empty()
    }
}

/// `keygate check` takes the same policy flags as `start`, to check a command line.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Listen address to check
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Trusted,
    None,
    Custom,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Trusted => Mode::Trusted,
            ModeArg::None => Mode::None,
            ModeArg::Custom => Mode::Custom,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InterceptArg {
    Secrets,
    All,
}

impl From<InterceptArg> for Intercept {
    fn from(i: InterceptArg) -> Intercept {
        match i {
            InterceptArg::Secrets => Intercept::Secrets,
            InterceptArg::All => Intercept::All,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA if it is missing
    Init {
        /// Replace an existing CA (clients must trust the new one)
        #[arg(long)]
        force: bool,
    },
    /// Print the path of the CA certificate
    Path {
        /// Print the path of ca/bundle.pem (system roots + keygate CA) instead
        #[arg(long)]
        bundle: bool,
    },
    /// Write the CA certificate (public part only) to a file
    Export {
        /// Destination file, or - for standard output
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}
