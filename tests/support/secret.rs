//! Registered secrets for tests: a secrets.yaml entry validated the way keygate validates
//! it, with a dummy and a real value unique to the test (so a leak check that searches
//! shared output can only find this test's value).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use keygate::secrets::registry::EnvVars;
use keygate::secrets::{Binding, SecretEntry, SecretValue};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A token no other test (or run) uses.
pub fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:x}{:x}", std::process::id(), nanos % (1 << 40))
}

/// `template` with its one `{unique}` replaced by [`unique`].
fn fill_unique(template: &str) -> String {
    assert_eq!(
        template.matches("{unique}").count(),
        1,
        "a test value's template holds `{{unique}}` once"
    );
    template.replace("{unique}", &unique())
}

/// A secret as a test registers it.
#[derive(Debug, Clone)]
pub struct TestSecret {
    /// The registry entry (name, hosts, dummy, least-privilege fields).
    pub entry: SecretEntry,
    /// The real value; `None` registers the secret without a value in the keyring.
    pub real: Option<String>,
}

impl TestSecret {
    /// Secret `name` bound to `hosts`, with a fresh dummy and real value.
    pub fn new(name: &str, hosts: &[&str]) -> TestSecret {
        TestSecret {
            entry: SecretEntry {
                name: name.to_string(),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                header: "x-api-key".into(),
                format: "{secret}".into(),
                env: EnvVars::None,
                dummy: format!("keygate-dummy-{name}-{}", unique()),
                methods: None,
                paths: None,
                query: false,
                websocket: false,
                body: None,
                kind: Default::default(),
                oauth2: None,
                github_app: None,
                google: None,
                aws: None,
            },
            real: Some(format!("sk-real-{name}-{}", unique())),
        }
    }

    /// `query: true`.
    pub fn query(mut self) -> TestSecret {
        self.entry.query = true;
        self
    }

    /// A real value of this shape: `template` with `{unique}` replaced by a token no
    /// other test uses (so a leak check searching shared output finds only this test's
    /// value). For values with characters that need encoding (`+ = / & %`) or mixed case.
    pub fn real_value(mut self, template: &str) -> TestSecret {
        self.real = Some(fill_unique(template));
        self
    }

    /// A dummy of this shape: `template` with `{unique}` replaced by a fresh token.
    pub fn dummy_value(mut self, template: &str) -> TestSecret {
        self.entry.dummy = fill_unique(template);
        self
    }

    /// `websocket: true`.
    pub fn websocket(mut self) -> TestSecret {
        self.entry.websocket = true;
        self
    }

    /// `body: json|form|text`.
    pub fn body(mut self, mode: keygate::secrets::BodyMode) -> TestSecret {
        self.entry.body = Some(mode);
        self
    }

    /// `methods: [...]`.
    pub fn methods(mut self, methods: &[&str]) -> TestSecret {
        self.entry.methods = Some(methods.iter().map(|m| m.to_string()).collect());
        self
    }

    /// `paths: [...]`.
    pub fn paths(mut self, paths: &[&str]) -> TestSecret {
        self.entry.paths = Some(paths.iter().map(|p| p.to_string()).collect());
        self
    }

    /// The entry changed by `edit` (a credential kind and its block, say).
    pub fn with(mut self, edit: impl FnOnce(&mut SecretEntry)) -> TestSecret {
        edit(&mut self.entry);
        self
    }

    /// This real value, exactly (key material: a PEM, a JSON document).
    pub fn real_exact(mut self, value: &str) -> TestSecret {
        self.real = Some(value.to_string());
        self
    }

    /// Registered, but with no value in the keyring.
    pub fn without_value(mut self) -> TestSecret {
        self.real = None;
        self
    }

    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The dummy the sandbox holds.
    pub fn dummy(&self) -> &str {
        &self.entry.dummy
    }

    /// The real value (panics for a secret without one).
    pub fn real(&self) -> &str {
        self.real.as_deref().expect("this secret has a real value")
    }

    /// The runtime binding, value loaded.
    pub fn binding(&self) -> Binding {
        let mut binding = self.entry.validate().expect("a valid secrets.yaml entry");
        binding.real = self
            .real
            .as_ref()
            .map(|r| SecretValue::new(r.clone()).expect("a valid secret value"));
        binding
    }
}
