use super::*;

pub(super) fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Randomness without a `rand` dependency: std's `RandomState` is seeded
/// from the OS per process and perturbed per instance; mixing in a counter
/// and the clock makes successive values distinct.
pub(super) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

pub(super) fn random_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bits = random_u64();
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
            bits /= ALPHABET.len() as u64;
        }
    }
    out
}

pub(super) fn random_guid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// GitHub-looking request ids (`XXXX:XXXX:XXXXXX:XXXXXX:XXXXXXXX`); the last
/// part is a process-wide counter, so ids never repeat.
pub(super) fn request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let r = random_u64();
    format!(
        "{:04X}:{:04X}:{:06X}:{:06X}:{:08X}",
        (r >> 48) & 0xffff,
        (r >> 32) & 0xffff,
        (r >> 8) & 0xff_ffff,
        r & 0xff_ffff,
        SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff
    )
}

/// A stable 40-hex-digit "commit SHA" for a seed.
pub(super) fn fake_sha(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    hex::encode(digest)[..40].to_owned()
}

/// A stable user id per login, so one login is one user everywhere.
pub(super) fn user_id(login: &str) -> u64 {
    // FNV-1a: stable across processes and Rust versions, unlike `Hash`.
    let hash = login
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    1_000_000 + hash % 90_000_000
}

/// Installations still have a classic (v1) node id in webhook payloads:
/// base64 of `023:IntegrationInstallation{id}`.
pub(super) fn installation_node_id(id: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("023:IntegrationInstallation{id}"))
}

pub(super) fn node_id(prefix: &str, id: u64) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_be_bytes());
    format!("{prefix}{encoded}")
}
