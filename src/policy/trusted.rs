//! The embedded `trusted` list (SPEC Appendix A): hosts a developer's tools need every day.
//!
//! Deliberately absent, because anyone can publish content there and so they are
//! exfiltration channels: `*.cloudfront.net`, `*.vercel.app`, `*.netlify.app`,
//! `*.supabase.co`, `gist.github.com`, `*.ngrok.io`, pastebins. docs/CONFIG.md explains.

/// Every pattern of the `trusted` mode, grouped as SPEC Appendix A groups them.
pub const TRUSTED: &[&str] = &[
    // package registries
    "registry.npmjs.org",
    "*.npmjs.org",
    "*.yarnpkg.com",
    "pypi.org",
    "*.pypi.org",
    "files.pythonhosted.org",
    "rubygems.org",
    "repo1.maven.org",
    "*.maven.org",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
    // containers
    "registry-1.docker.io",
    "auth.docker.io",
    "*.docker.io",
    "ghcr.io",
    "gcr.io",
    "*.azurecr.io",
    // source
    "github.com",
    "api.github.com",
    "codeload.github.com",
    "raw.githubusercontent.com",
    "objects.githubusercontent.com",
    // AI APIs
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
    // editor
    "marketplace.visualstudio.com",
    "*.vsassets.io",
    "update.code.visualstudio.com",
];
