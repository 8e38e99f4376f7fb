//! Timing check of `RsaBlockKey::decrypt_fixed`, dudect style.
//!
//! Builds ciphertexts of several classes (a valid block and each kind of bad
//! padding), runs them through `decrypt_fixed` in random interleaved order,
//! times each call with `Instant`, and prints Welch's t statistic between each
//! bad class and the valid class. It does the same for a deliberately leaky
//! variant that returns early on a bad EM[1], which the statistic must flag.
//! |t| above 4.5 is the usual dudect threshold for "timing differs"; the
//! program only reports and always exits 0.
//!
//! Usage: `timing [--bits 1024|4096] [--samples N]` (N per class).

use std::hint::black_box;
use std::time::Instant;

use hkdf::Hkdf;
use keyward_mixmaster::{parse_secring, RsaBlockKey};
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use sha2::Sha256;

const CLASSES: [&str; 7] =
    ["valid", "random c", "block type 1", "no zero separator", "short PS", "OAEP", "wrong message length"];
/// Distinct ciphertexts made per class; samples cycle through them.
const VARIANTS: usize = 64;

/// xorshift64*: reproducible, and enough to interleave classes and fill padding.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn nonzero_byte(&mut self) -> u8 {
        (self.next() % 255 + 1) as u8
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn raw_encrypt(rsa: &Rsa<Private>, em: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; rsa.size() as usize];
    rsa.public_encrypt(em, &mut out, Padding::NONE).expect("raw RSA encryption");
    out
}

/// EM = 00 02 PS 00 M with |M| = msg_len and PS non-zero.
fn pkcs1_type2(k: usize, msg_len: usize, rng: &mut Xorshift) -> Vec<u8> {
    let mut em = vec![0u8, 2];
    em.extend((0..k - msg_len - 3).map(|_| rng.nonzero_byte()));
    em.push(0);
    em.extend((0..msg_len).map(|_| rng.byte()));
    em
}

fn make_ciphertext(class: usize, rsa: &Rsa<Private>, out_len: usize, rng: &mut Xorshift) -> Vec<u8> {
    let k = rsa.size() as usize;
    match class {
        0 => raw_encrypt(rsa, &pkcs1_type2(k, out_len, rng)),
        1 => {
            // Uniform below n, like real ciphertexts: a class of numerically
            // smaller c would differ in a public property, not in padding.
            let n = rsa.n().to_vec_padded(k as i32).expect("modulus fits k bytes");
            loop {
                let c: Vec<u8> = (0..k).map(|_| rng.byte()).collect();
                if c < n {
                    break c;
                }
            }
        }
        2 => {
            let mut em = vec![0u8, 1];
            em.extend(std::iter::repeat_n(0xff, k - out_len - 3));
            em.push(0);
            em.extend((0..out_len).map(|_| rng.byte()));
            raw_encrypt(rsa, &em)
        }
        3 => {
            let mut em = vec![0u8, 2];
            em.extend((0..k - 2).map(|_| rng.nonzero_byte()));
            raw_encrypt(rsa, &em)
        }
        4 => {
            let mut em = vec![0u8, 2];
            em.extend((0..7).map(|_| rng.nonzero_byte()));
            em.push(0);
            em.extend((0..k - 10).map(|_| rng.byte()));
            raw_encrypt(rsa, &em)
        }
        5 => {
            let msg: Vec<u8> = (0..out_len).map(|_| rng.byte()).collect();
            let mut out = vec![0u8; k];
            rsa.public_encrypt(&msg, &mut out, Padding::PKCS1_OAEP).expect("OAEP encryption");
            out
        }
        _ => raw_encrypt(rsa, &pkcs1_type2(k, out_len - 1, rng)),
    }
}

/// The leaky variant: the same work as `decrypt_fixed`, except that it
/// returns before computing the rejection value when EM[1] is not 0x02.
fn leaky_decrypt(pkey: &PKey<Private>, ciphertext: &[u8], out_len: usize) -> Vec<u8> {
    let k = ciphertext.len();
    let mut em = vec![0u8; k];
    let ok = PkeyCtx::new(pkey)
        .and_then(|mut ctx| {
            ctx.decrypt_init()?;
            ctx.set_rsa_padding(Padding::NONE)?;
            ctx.decrypt(ciphertext, Some(&mut em))
        })
        .is_ok();
    if !ok || em[1] != 2 {
        return vec![0u8; out_len];
    }
    let hkdf = Hkdf::<Sha256>::new(Some(b"leaky"), ciphertext);
    let mut reject = vec![0u8; out_len];
    hkdf.expand(b"reject", &mut reject).expect("short output");
    let good = em[0] == 0 && em[2..k - out_len - 1].iter().all(|&b| b != 0) && em[k - out_len - 1] == 0;
    if good {
        em[k - out_len..].to_vec()
    } else {
        reject
    }
}

struct Stats {
    samples: Vec<Vec<f64>>,
}

impl Stats {
    fn new() -> Stats {
        Stats { samples: vec![Vec::new(); CLASSES.len()] }
    }

    /// Welch's t between class `a` and class `b`, over samples at or below
    /// `cutoff` (dudect crops the slow tail, where interrupts and other load
    /// land).
    fn welch_t(&self, a: usize, b: usize, cutoff: f64) -> f64 {
        let moments = |v: &[f64]| {
            let kept: Vec<f64> = v.iter().copied().filter(|&x| x <= cutoff).collect();
            let n = kept.len() as f64;
            let mean = kept.iter().sum::<f64>() / n;
            let var = kept.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (n, mean, var)
        };
        let (na, ma, va) = moments(&self.samples[a]);
        let (nb, mb, vb) = moments(&self.samples[b]);
        (ma - mb) / (va / na + vb / nb).sqrt()
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut all: Vec<f64> = self.samples.iter().flatten().copied().collect();
        all.sort_by(|x, y| x.partial_cmp(y).expect("no NaN"));
        all[((all.len() - 1) as f64 * p) as usize]
    }

    fn median(&self, class: usize) -> f64 {
        let mut v = self.samples[class].clone();
        v.sort_by(|x, y| x.partial_cmp(y).expect("no NaN"));
        v[v.len() / 2]
    }
}

fn measure(
    name: &str,
    samples_per_class: usize,
    ciphertexts: &[Vec<Vec<u8>>],
    rng: &mut Xorshift,
    mut op: impl FnMut(&[u8]) -> usize,
) {
    let mut stats = Stats::new();
    let total = samples_per_class * CLASSES.len();
    // Warm-up, not recorded.
    for class in ciphertexts {
        for c in class.iter().take(8) {
            black_box(op(c));
        }
    }
    for _ in 0..total {
        let class = (rng.next() % CLASSES.len() as u64) as usize;
        let c = &ciphertexts[class][(rng.next() % VARIANTS as u64) as usize];
        let start = Instant::now();
        black_box(op(black_box(c)));
        stats.samples[class].push(start.elapsed().as_nanos() as f64);
    }
    let p50 = stats.percentile(0.5);
    let p90 = stats.percentile(0.9);
    println!("\n{name}");
    println!("{:<20} {:>8} {:>12} {:>10} {:>10} {:>10}", "class", "samples", "median ns", "t (all)", "t (p90)", "t (p50)");
    for (i, class) in CLASSES.iter().enumerate() {
        let n = stats.samples[i].len();
        if i == 0 {
            println!("{:<20} {:>8} {:>12.0} {:>10} {:>10} {:>10}", class, n, stats.median(0), "-", "-", "-");
            continue;
        }
        println!(
            "{:<20} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>10.2}",
            class,
            n,
            stats.median(i),
            stats.welch_t(i, 0, f64::INFINITY),
            stats.welch_t(i, 0, p90),
            stats.welch_t(i, 0, p50)
        );
    }
}

fn main() {
    let mut bits = 1024;
    let mut samples = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bits" => bits = args.next().and_then(|v| v.parse().ok()).unwrap_or(1024),
            "--samples" => samples = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            other => eprintln!("ignoring unknown argument {other}"),
        }
    }
    let (ring, pass, out_len): (&[u8], &[u8], usize) = if bits == 4096 {
        (include_bytes!("../tests/data/r4096/secring.mix"), "Grüße aus S-4096".as_bytes(), 216)
    } else {
        (include_bytes!("../tests/data/r1024/secring.mix"), b"mixtest-S-1024", 24)
    };
    if samples == 0 {
        samples = if bits == 4096 { 2_000 } else { 20_000 };
    }

    let secret = &parse_secring(ring, pass).expect("test key ring")[0];
    let der = secret.to_pkcs1_der();
    let key = RsaBlockKey::from_pkcs1_der(&der).expect("test key");
    let rsa = Rsa::private_key_from_der(&der).expect("test key");
    let pkey = PKey::from_rsa(rsa.clone()).expect("test key");

    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let ciphertexts: Vec<Vec<Vec<u8>>> = (0..CLASSES.len())
        .map(|class| (0..VARIANTS).map(|_| make_ciphertext(class, &rsa, out_len, &mut rng)).collect())
        .collect();

    println!(
        "decrypt_fixed timing, {bits}-bit test key, out_len {out_len}, {samples} samples per class (approximate: classes are drawn at random)"
    );
    println!("|t| > 4.5: timing differs from the valid class (dudect threshold)");
    measure("decrypt_fixed (constant-time)", samples, &ciphertexts, &mut rng, |c| {
        key.decrypt_fixed(c, out_len).expect("well-formed request").len()
    });
    measure("leaky variant (early return on EM[1] != 0x02)", samples, &ciphertexts, &mut rng, |c| {
        leaky_decrypt(&pkey, c, out_len).len()
    });
}
