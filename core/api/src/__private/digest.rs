//! The digest of rediff-api's public surface that the plugin fingerprint
//! carries. The build script includes this file by path, so the host, the
//! build and tests compute it one way.

/// 64-bit FNV-1a of `snapshot` (the text of `public-api.txt`) as 16 hex
/// digits: stable across builds and platforms.
pub fn surface_digest(snapshot: &[u8]) -> String {
    let hash = snapshot.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}
