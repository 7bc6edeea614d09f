//! The upstream's test PKI: an ECDSA P-256 root and a leaf for the benchmark host names,
//! so every client (and keygate, via `--upstream-ca`) verifies the upstream for real.

use std::path::PathBuf;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write root.pem, upstream.pem (leaf + root) and upstream.key into.
    #[arg(long)]
    out: PathBuf,
    /// DNS names of the upstream certificate.
    #[arg(long = "name", required = true)]
    names: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut root = CertificateParams::default();
    root.distinguished_name
        .push(DnType::CommonName, "keygate benchmark root");
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key)?;
    let issuer = Issuer::new(root, root_key);
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(args.names.clone())?;
    leaf.distinguished_name
        .push(DnType::CommonName, args.names[0].as_str());
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    std::fs::create_dir_all(&args.out)?;
    let write = |name: &str, text: String| {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("root.pem", root_cert.pem())?;
    write(
        "upstream.pem",
        format!("{}{}", leaf_cert.pem(), root_cert.pem()),
    )?;
    write("upstream.key", leaf_key.serialize_pem())?;
    Ok(())
}
