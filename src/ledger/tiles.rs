//! The log's files as c2sp.org/tlog-tiles lays them out, so a static web server can
//! serve the ledger directory as it is: hash tiles of height 8 at `tile/<L>/<N>`, entry
//! bundles at `tile/entries/<N>`, a partial one of width W at `<N>.p/<W>`, N in groups
//! of three digits all but the last prefixed by `x` (1234067 is `x001/x234/067`).

/// Hashes (or entries) per full tile.
pub const WIDTH: u64 = 256;
/// Tile height: `WIDTH` is `1 << HEIGHT`.
pub const HEIGHT: u8 = 8;
/// The longest entry a bundle can frame (its length is a big-endian u16).
pub const MAX_ENTRY: usize = u16::MAX as usize;

fn index_path(n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    let mut n = n / 1000;
    while n > 0 {
        s = format!("x{:03}/{s}", n % 1000);
        n /= 1000;
    }
    s
}

fn with_width(base: String, w: u64) -> String {
    if w == WIDTH {
        base
    } else {
        format!("{base}.p/{w}")
    }
}

/// Path of hash tile `n` at tile level `level` holding `w` hashes (1..=256).
pub fn hash_tile(level: u8, n: u64, w: u64) -> String {
    with_width(format!("tile/{level}/{}", index_path(n)), w)
}

/// Path of entry bundle `n` holding `w` entries (1..=256).
pub fn bundle(n: u64, w: u64) -> String {
    with_width(format!("tile/entries/{}", index_path(n)), w)
}

/// The hash tiles a tree of `size` leaves has, lowest level first: (level, n, width),
/// each tile full but the last of each level.
pub fn hash_tiles(size: u64) -> Vec<(u8, u64, u64)> {
    let mut out = Vec::new();
    let mut level = 0u8;
    let mut count = size; // hashes at this tile level's tree level
    while count > 0 {
        for n in 0..count.div_ceil(WIDTH) {
            out.push((level, n, (count - n * WIDTH).min(WIDTH)));
        }
        count /= WIDTH;
        level += 1;
    }
    out
}

/// Every file a tree of `size` leaves has: its hash tiles, then its entry bundles.
pub fn paths(size: u64) -> Vec<String> {
    hash_tiles(size)
        .into_iter()
        .map(|(l, n, w)| hash_tile(l, n, w))
        .chain((0..size.div_ceil(WIDTH)).map(|n| bundle(n, (size - n * WIDTH).min(WIDTH))))
        .collect()
}

/// Appends `entry` to a bundle: its length (big-endian u16), then its bytes.
pub fn frame(entry: &[u8], bundle: &mut Vec<u8>) {
    bundle.extend_from_slice(&(entry.len() as u16).to_be_bytes());
    bundle.extend_from_slice(entry);
}

/// The entries of a bundle, or what is wrong with it.
pub fn entries(bundle: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(format!("entry {} has a torn length", out.len()));
        };
        let len = u16::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(format!("entry {} is cut short", out.len()));
        }
        let (entry, tail) = tail.split_at(len);
        out.push(entry);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// r15: the paths are tlog-tiles' (its spec's own examples), and agree with Go's
    /// sumdb layout as the tlog_tiles crate writes it, level for level.
    #[test]
    fn r15_paths_are_the_c2sp_layout() {
        assert_eq!(hash_tile(0, 1234067, 256), "tile/0/x001/x234/067");
        assert_eq!(hash_tile(1, 5, 3), "tile/1/005.p/3");
        assert_eq!(bundle(1000, 256), "tile/entries/x001/000");
        assert_eq!(bundle(0, 1), "tile/entries/000.p/1");
        let go = tlog_tiles::Tile::new(8, 2, 1234067, 7, false).path();
        assert_eq!(go.replacen("tile/8/", "tile/", 1), hash_tile(2, 1234067, 7));
        // 70,000 leaves: 273 full level-0 tiles and one of 112; at level 1 one full and
        // one of 17; at level 2 one of 1 (as Go's `NewTiles` lists them).
        let t = hash_tiles(70_000);
        assert_eq!(t.len(), 277);
        assert_eq!(t[273], (0, 273, 112));
        assert_eq!(t[274..], [(1, 0, 256), (1, 1, 17), (2, 0, 1)]);
        let go: Vec<String> = tlog_tiles::Tile::new_tiles(8, 0, 70_000)
            .iter()
            .map(|t| t.path().replacen("tile/8/", "tile/", 1))
            .collect();
        let ours: Vec<String> = t.iter().map(|&(l, n, w)| hash_tile(l, n, w)).collect();
        assert_eq!(go, ours);
        assert_eq!(hash_tiles(256), vec![(0, 0, 256), (1, 0, 1)]);
        assert!(hash_tiles(0).is_empty());
    }

    #[test]
    fn r15_bundles_frame_and_detect_a_torn_tail() {
        let mut b = Vec::new();
        frame(b"{}", &mut b);
        frame(b"[1]", &mut b);
        assert_eq!(entries(&b).unwrap(), vec![&b"{}"[..], &b"[1]"[..]]);
        assert!(entries(&b[..b.len() - 1]).is_err());
        assert!(entries(&b[..5]).is_err());
    }
}
