use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::credentials::test_keys::{self, A2_SIGNATURE, A2_SIGNING_INPUT};

#[test]
fn pkcs1_and_pkcs8_pem_sign_the_rfc7515_vector() {
    let expected = URL_SAFE_NO_PAD.decode(A2_SIGNATURE).unwrap();
    for pem in [test_keys::pkcs1_pem(), test_keys::pkcs8_pem()] {
        let key = SigningKey::from_pem(&pem).unwrap();
        let signature = key.sign_rs256(A2_SIGNING_INPUT.as_bytes()).unwrap();
        assert_eq!(signature, expected, "{}", &pem[..31]);
    }
}

#[test]
fn the_first_private_key_is_found_among_other_blocks() {
    let pem = format!(
        "service account key\n{}{}",
        test_keys::pem("CERTIFICATE", b"not a key"),
        test_keys::pkcs1_pem()
    );
    let key = SigningKey::from_pem(&pem).unwrap();
    let signature = key.sign_rs256(b"message").unwrap();
    assert!(test_keys::verifying_key().verify_rs256(b"message", &signature));
}

#[test]
fn unusable_private_keys_are_refused_with_advice() {
    assert_eq!(SigningKey::from_pem("").unwrap_err(), KeyError::NotPem);
    assert_eq!(
        SigningKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .unwrap_err(),
        KeyError::NotPem
    );
    let encrypted = test_keys::pem("ENCRYPTED PRIVATE KEY", &test_keys::pkcs8_der());
    assert_eq!(
        SigningKey::from_pem(&encrypted).unwrap_err(),
        KeyError::Encrypted
    );
    let sec1 = test_keys::pem("EC PRIVATE KEY", b"\x30\x03\x02\x01\x01");
    assert_eq!(SigningKey::from_pem(&sec1).unwrap_err(), KeyError::NotRsa);
    // A PKCS#8 EC key (what rcgen and most tools write today) is not RSA either.
    let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
    assert!(matches!(
        SigningKey::from_pem(&ec).unwrap_err(),
        KeyError::Rejected(_)
    ));
    // A truncated RSA key.
    let mut der = test_keys::pkcs1_der();
    der.truncate(600);
    let cut = test_keys::pem("RSA PRIVATE KEY", &der);
    assert!(matches!(
        SigningKey::from_pem(&cut).unwrap_err(),
        KeyError::Rejected(_)
    ));
}

#[test]
fn a_generated_key_signs_verifies_and_round_trips_through_pem() {
    let key = SigningKey::generate_rsa2048().unwrap();
    let public = key.verifying_key().unwrap();
    let signature = key.sign_rs256(b"payload").unwrap();
    assert_eq!(signature.len(), 256, "RSA-2048");
    assert!(public.verify_rs256(b"payload", &signature));
    assert!(!public.verify_rs256(b"payloaD", &signature));

    let pem = key.to_pkcs8_pem().unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{}",
        &pem[..28]
    );
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
    assert!(pem.lines().all(|line| line.len() <= 64));
    let reread = SigningKey::from_pem(&pem).unwrap();
    assert_eq!(reread.sign_rs256(b"payload").unwrap(), signature);

    let public_pem = public.to_pem().unwrap();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let public_again = VerifyingKey::from_pem(&public_pem).unwrap();
    assert!(public_again.verify_rs256(b"payload", &signature));
}

#[test]
fn two_generated_keys_differ() {
    let a = SigningKey::generate_rsa2048().unwrap();
    let b = SigningKey::generate_rsa2048().unwrap();
    let signature = a.sign_rs256(b"m").unwrap();
    assert!(!b.verifying_key().unwrap().verify_rs256(b"m", &signature));
}

#[test]
fn public_keys_are_read_in_both_pem_forms() {
    let signature = URL_SAFE_NO_PAD.decode(A2_SIGNATURE).unwrap();
    let pkcs1 = test_keys::pem("RSA PUBLIC KEY", &test_keys::public_pkcs1_der());
    let spki = test_keys::verifying_key().to_pem().unwrap();
    for pem in [pkcs1, spki] {
        let key = VerifyingKey::from_pem(&pem).unwrap();
        assert!(key.verify_rs256(A2_SIGNING_INPUT.as_bytes(), &signature));
    }
    assert_eq!(
        VerifyingKey::from_pem("nothing").unwrap_err(),
        KeyError::PublicNotPem
    );
}

#[test]
fn debug_and_errors_never_show_key_material() {
    let key = test_keys::signing_key();
    let pem = test_keys::pkcs8_pem();
    let shown = format!("{key:?} {:?}", Some(&key));
    assert_eq!(
        shown,
        "SigningKey(<redacted RSA-2048>) Some(SigningKey(<redacted RSA-2048>))"
    );
    let body: String = pem.lines().skip(1).take(3).collect();
    let mut cut = test_keys::pkcs8_der();
    cut.truncate(700);
    let errors = [
        SigningKey::from_pem(&pem[..pem.len() - 30]).unwrap_err(),
        SigningKey::from_pem(&test_keys::pem("PRIVATE KEY", &cut)).unwrap_err(),
    ];
    for error in errors {
        let text = format!("{error} {error:?}");
        for line in pem.lines().skip(1) {
            assert!(!text.contains(&line[..20]), "{text}");
        }
        assert!(!text.contains(&body[..20]));
    }
}
