//! Provider recipes (`addons/*.yaml`): the fields of a registry entry minus the
//! value-specific ones, with a dummy *template* that keeps the provider's key shape.
//! Built-in recipes are compiled in; `$KEYGATE_HOME/addons/NAME.yaml` overrides them.

use std::path::Path;

use serde::Deserialize;

use super::registry::{EnvVars, SecretEntry};
use crate::config::{ConfigError, yaml_error};

/// The recipes compiled into the binary: (name, YAML text).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("anthropic", include_str!("../../addons/anthropic.yaml")),
    ("openai", include_str!("../../addons/openai.yaml")),
    ("github", include_str!("../../addons/github.yaml")),
    ("gemini", include_str!("../../addons/gemini.yaml")),
    ("huggingface", include_str!("../../addons/huggingface.yaml")),
    ("npm", include_str!("../../addons/npm.yaml")),
    ("aws", include_str!("../../addons/aws.yaml")),
    ("bedrock", include_str!("../../addons/bedrock.yaml")),
    ("google", include_str!("../../addons/google.yaml")),
    ("vertex", include_str!("../../addons/vertex.yaml")),
    ("oauth2", include_str!("../../addons/oauth2.yaml")),
    ("github-app", include_str!("../../addons/github-app.yaml")),
];

/// One provider recipe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// One line on what the recipe is for.
    pub description: String,
    /// Hosts the provider's key is used with.
    pub hosts: Vec<String>,
    /// The provider's header (as in a registry entry: `authorization` when absent).
    #[serde(default = "default_header")]
    pub header: String,
    /// How the key appears in it.
    #[serde(default = "default_format")]
    pub format: String,
    /// Environment variable(s) the provider's tools read.
    #[serde(default)]
    pub env: EnvVars,
    /// Dummy template (see [`super::dummy`]).
    pub dummy: String,
    /// Least-privilege defaults.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Least-privilege defaults.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Swap in the query too (e.g. Gemini's `?key=`).
    #[serde(default)]
    pub query: bool,
    /// Swap in the WebSocket frames the client sends.
    #[serde(default)]
    pub websocket: bool,
    /// Swap in request bodies of this kind (`json`, `form`, `text`).
    #[serde(default)]
    pub body: Option<super::binding::BodyMode>,
    /// The credential kind (default `static`).
    #[serde(default)]
    pub kind: super::kind::KindName,
    /// `kind: oauth2` defaults (a template: the user gives the rest).
    #[serde(default)]
    pub oauth2: Option<super::kind::Oauth2Block>,
    /// `kind: github-app` defaults.
    #[serde(default)]
    pub github_app: Option<super::kind::GithubAppBlock>,
    /// `kind: google` defaults.
    #[serde(default)]
    pub google: Option<super::kind::GoogleBlock>,
}

fn default_format() -> String {
    "{secret}".into()
}

fn default_header() -> String {
    "authorization".into()
}

impl Recipe {
    /// Parses recipe text; `origin` is used in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Recipe, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| yaml_error(&e, origin))
    }

    /// The registry entry this recipe makes for a secret called `name` (a fresh dummy
    /// from the template), not yet validated.
    pub fn entry(&self, name: &str) -> Result<SecretEntry, String> {
        Ok(SecretEntry {
            name: name.to_string(),
            hosts: self.hosts.clone(),
            header: self.header.clone(),
            format: self.format.clone(),
            env: self.env.clone(),
            dummy: super::dummy::expand(&self.dummy, name)?,
            methods: self.methods.clone(),
            paths: self.paths.clone(),
            query: self.query,
            websocket: self.websocket,
            body: self.body,
            kind: self.kind,
            oauth2: self.oauth2.clone(),
            github_app: self.github_app.clone(),
            google: self.google.clone(),
            aws: match self.kind {
                // The phantom secret key, made fresh for each secret like its dummy.
                super::kind::KindName::Aws => Some(super::kind::AwsBlock {
                    secret_access_key: super::dummy::expand("keygateDummy{random:28}", name)?,
                    session_token: None,
                    source: None,
                    command: None,
                }),
                _ => None,
            },
        })
    }

    /// `Err` with what is wrong when a secret made from this recipe would be refused
    /// (hosts, header, format, dummy template, env names, methods, paths). A template
    /// (like the built-in `oauth2` and `github-app`) may leave out what `secret add`
    /// takes from its flags ([`template_gaps`]); those are filled with placeholders
    /// first, and the rest is checked.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let mut entry = self.entry(name)?;
        fill_template_gaps(&mut entry);
        entry.validate().map(drop)
    }
}

/// What an entry made from a template recipe still lacks, as the `secret add` flags
/// that give it: `--host` (no hosts), `--token-url` and `--client-id` (`oauth2`),
/// `--app-id` and `--installation-id` (`github-app`).
pub fn template_gaps(entry: &SecretEntry) -> Vec<&'static str> {
    use super::kind::KindName;
    let mut gaps = Vec::new();
    if entry.hosts.is_empty() {
        gaps.push("--host");
    }
    match entry.kind {
        KindName::Oauth2 => {
            let block = entry.oauth2.clone().unwrap_or_default();
            if block.token_url.trim().is_empty() {
                gaps.push("--token-url");
            }
            if block.client_id.trim().is_empty() {
                gaps.push("--client-id");
            }
        }
        KindName::GithubApp => {
            let block = entry.github_app.clone().unwrap_or_default();
            if block.app_id.trim().is_empty() {
                gaps.push("--app-id");
            }
            if block.installation_id == 0 {
                gaps.push("--installation-id");
            }
        }
        KindName::Static | KindName::Aws | KindName::Google => {}
    }
    gaps
}

/// Fills each of [`template_gaps`] with a placeholder, to check the rest of the entry.
fn fill_template_gaps(entry: &mut SecretEntry) {
    for gap in template_gaps(entry) {
        match gap {
            "--host" => entry.hosts = vec!["api.example.com".into()],
            "--token-url" => {
                entry.oauth2.get_or_insert_with(Default::default).token_url =
                    "https://auth.example.com/token".into();
            }
            "--client-id" => {
                entry.oauth2.get_or_insert_with(Default::default).client_id = "client".into();
            }
            "--app-id" => {
                entry.github_app.get_or_insert_with(Default::default).app_id = "1".into();
            }
            _ => {
                entry
                    .github_app
                    .get_or_insert_with(Default::default)
                    .installation_id = 1
            }
        }
    }
}

/// Finds recipe `name`: the user's `addons_dir/NAME.yaml` first, then the built-in one.
pub fn find(name: &str, addons_dir: &Path) -> Result<Option<Recipe>, ConfigError> {
    let user = addons_dir.join(format!("{name}.yaml"));
    match std::fs::read_to_string(&user) {
        Ok(text) => return Recipe::parse(&text, &user).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ConfigError::File {
                path: user,
                message: e.to_string(),
            });
        }
    }
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Recipe::parse(text, Path::new(&format!("addons/{n}.yaml"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_recipe_yields_a_valid_entry() {
        for (name, text) in BUILT_IN {
            let recipe = Recipe::parse(text, Path::new(name)).unwrap();
            recipe.check(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let gaps = template_gaps(&recipe.entry(name).unwrap());
            match *name {
                "oauth2" => assert_eq!(gaps, ["--host", "--token-url", "--client-id"]),
                "github-app" => assert_eq!(gaps, ["--app-id", "--installation-id"]),
                _ => assert!(gaps.is_empty(), "{name}: {gaps:?}"),
            }
        }
        // And a broken one does not.
        let mut bad = Recipe::parse(BUILT_IN[0].1, Path::new("x")).unwrap();
        bad.hosts = vec!["exa*mple.com".into()];
        assert!(bad.check("x").unwrap_err().contains("exa*mple.com"));
    }

    #[test]
    fn a_template_recipe_of_the_users_checks_but_its_errors_still_show() {
        let template = "description: corp\nkind: oauth2\nhosts: [api.corp.example]\nformat: \"Bearer {secret}\"\ndummy: \"keygate-dummy-{name}-{random:32}\"\n";
        let recipe = Recipe::parse(template, Path::new("corp.yaml")).unwrap();
        recipe.check("corp").unwrap();
        let broken = template.replace("Bearer {secret}", "Bearer");
        let recipe = Recipe::parse(&broken, Path::new("corp.yaml")).unwrap();
        assert!(recipe.check("corp").unwrap_err().contains("{secret}"));
    }

    #[test]
    fn user_recipe_overrides_built_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("anthropic.yaml"),
            "description: mine\nhosts: [llm.internal]\nheader: x-api-key\ndummy: \"sk-ant-{random:20}\"\n",
        )
        .unwrap();
        let r = find("anthropic", dir.path()).unwrap().unwrap();
        assert_eq!(r.hosts, vec!["llm.internal"]);
        let builtin = find("openai", dir.path()).unwrap().unwrap();
        assert_eq!(builtin.hosts, vec!["api.openai.com"]);
        assert!(find("nope", dir.path()).unwrap().is_none());
    }
}
