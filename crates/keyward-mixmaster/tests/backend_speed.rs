//! Speed of PKCS#1 v1.5 decryption with the `rsa` crate 0.10 against OpenSSL
//! (vendored 3.6), to justify the backend of `RsaBlockKey`. Ignored by
//! default: run with `cargo test -p keyward-mixmaster --test backend_speed --
//! --ignored --nocapture`. Dependencies build at opt-level 3 in the dev
//! profile, so the numbers hold for release builds too.

use std::hint::black_box;
use std::time::{Duration, Instant};

use keyward_mixmaster::{parse_secring, RsaBlockKey};
use rsa::pkcs1::DecodeRsaPrivateKey;

fn data(rel: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)).unwrap()
}

fn time_per_call(iterations: u32, mut op: impl FnMut()) -> Duration {
    op();
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed() / iterations
}

#[test]
#[ignore = "timing loop; run by hand"]
fn rsa_crate_vs_openssl_decryption_speed() {
    let cases = [
        ("r1024", "mixtest-S-1024", 24usize, 200u32),
        ("r4096", "Grüße aus S-4096", 216, 20),
    ];
    for (dir, pass, out_len, iterations) in cases {
        let secret = parse_secring(&data(&format!("{dir}/secring.mix")), pass.as_bytes()).unwrap().remove(0);
        let der = secret.to_pkcs1_der();
        // The first packet's RSA block is a valid PKCS#1 v1.5 ciphertext.
        let packet = keyward_mixmaster::parse_packet(&data(&format!("{dir}/packets/01.eml"))).unwrap();
        let block = packet.rsa_block.clone();

        let openssl_key = RsaBlockKey::from_pkcs1_der(&der).unwrap();
        let rust_key = rsa::PrivateKey::from_pkcs1_der(&der).unwrap();
        let expected = openssl_key.decrypt_fixed(&block, out_len).unwrap();
        assert_eq!(rust_key.decrypt(rsa::Pkcs1v15Encrypt, &block).unwrap(), *expected);

        let openssl = time_per_call(iterations, || {
            black_box(openssl_key.decrypt_fixed(black_box(&block), out_len).unwrap());
        });
        let rust = time_per_call(iterations, || {
            black_box(rust_key.decrypt(rsa::Pkcs1v15Encrypt, black_box(&block)).unwrap());
        });
        println!(
            "{dir}: OpenSSL decrypt_fixed {:?} per call, rsa 0.10 Pkcs1v15Encrypt {:?} per call ({:.1}x)",
            openssl,
            rust,
            rust.as_secs_f64() / openssl.as_secs_f64()
        );
    }
}
