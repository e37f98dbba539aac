//! Nonce-scanning kernels: given a [`ScanJob`] and a nonce range, report every nonce whose
//! double SHA-256 passes the target's top word.
//!
//! Role: the hot loop and nothing else. The kernel is chosen once, at run time, from what
//! the CPU reports and a short calibration race between those it runs (never from build
//! flags: `-C target-cpu=native` is not to be used), and is named in every report. A kernel must not allocate, lock, log or look at the clock;
//! it only calls `on_candidate`, which is rare. Candidates are re-hashed by the caller with
//! the sha2 crate, so a kernel bug shows up as a missing share, never as a bad one sent.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::job::{BlockHeader, ScanJob, Target};

#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod portable;
#[cfg(target_arch = "x86_64")]
pub mod shani;

/// A SHA-256d nonce-scanning implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Hand-written x86_64 AVX-512 kernel: 16 nonces per zmm register, no SHA unit.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Hand-written x86_64 SHA-NI kernel interleaving several nonces.
    #[cfg(target_arch = "x86_64")]
    ShaNi,
    /// sha2's `compress256` with the same midstate scheme: works everywhere.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs: the first call races them (about 20 ms, see
    /// [`Kernel::calibrate`]); the answer holds for the rest of the process.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let (k, times) = Kernel::calibrate(&Kernel::available());
            tracing::debug!(kernel = k.name(), ?times, "Kernel calibration");
            k
        })
    }

    /// Which of `kernels` hashes fastest here, by the best of a few alternating bursts of
    /// nonces each (other load can only slow a burst down); returns it with each one's best
    /// burst time. Ties go to the earlier kernel. Which kernel wins depends on the CPU
    /// (AVX-512 on 256-bit units, or a fast SHA unit, can turn the order round), so it is
    /// measured rather than assumed.
    pub fn calibrate(kernels: &[Kernel]) -> (Kernel, Vec<(&'static str, Duration)>) {
        const ROUNDS: u32 = 3;
        const NONCES: u32 = 1 << 14;
        let job = BlockHeader([0; 80]).prepare(Target([0; 8]));
        let mut best = vec![Duration::MAX; kernels.len()];
        if kernels.len() > 1 {
            for r in 0..ROUNDS {
                for (i, k) in kernels.iter().enumerate() {
                    let t0 = Instant::now();
                    k.scan(&job, r * NONCES, NONCES, |n| {
                        std::hint::black_box(n);
                    });
                    best[i] = best[i].min(t0.elapsed());
                }
            }
        }
        let fastest = (0..kernels.len()).min_by_key(|&i| best[i]).unwrap_or(0);
        let times = kernels.iter().map(|k| k.name()).zip(best).collect();
        (kernels[fastest], times)
    }

    /// Every kernel this CPU runs, in the order measured by `hash bench` on an Ice Lake
    /// server (AVX-512, SHA-NI, sha2): the default when calibration cannot tell.
    pub fn available() -> Vec<Kernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        if avx512::supported() {
            v.push(Kernel::Avx512);
        }
        #[cfg(target_arch = "x86_64")]
        if shani::supported() {
            v.push(Kernel::ShaNi);
        }
        v.push(Kernel::Portable);
        v
    }

    /// A kernel by its reported name, if this CPU runs it.
    pub fn by_name(name: &str) -> Option<Kernel> {
        Kernel::available().into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Kernel::ShaNi => "sha-ni",
            Kernel::Portable => "sha2-compress256",
        }
    }

    /// Hashes nonces `start .. start + count` (the caller keeps `start + count <= 2^32`)
    /// and calls `on_candidate(nonce)` for each whose hash's top 32 bits are within the
    /// target's top word. The caller confirms candidates against the full target.
    #[inline]
    pub fn scan<F: FnMut(u32)>(self, job: &ScanJob, start: u32, count: u32, on_candidate: F) {
        debug_assert!(start as u64 + count as u64 <= 1 << 32);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is only ever constructed by `best()`/`available()` after
            // `avx512::supported()` confirmed AVX-512F at run time.
            Kernel::Avx512 => unsafe { avx512::scan(job, start, count, on_candidate) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `ShaNi` is only ever constructed by `best()`/`available()` after
            // `shani::supported()` confirmed the CPU features at run time.
            Kernel::ShaNi => unsafe { shani::scan(job, start, count, on_candidate) },

            Kernel::Portable => portable::scan(job, start, count, on_candidate),
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::super::job::{BlockHeader, Target};
    use super::*;
    use proptest::prelude::*;

    /// Every nonce in the range whose reference hash passes the top word, by sha2's Digest.
    fn reference(header: &BlockHeader, target: Target, start: u32, count: u32) -> Vec<u32> {
        (start as u64..start as u64 + count as u64)
            .map(|n| n as u32)
            .filter(|&n| header.with_nonce(n).block_hash().limbs()[7] <= target.top_word())
            .collect()
    }

    fn kernel_finds(
        k: Kernel,
        header: &BlockHeader,
        target: Target,
        start: u32,
        count: u32,
    ) -> Vec<u32> {
        let job = header.prepare(target);
        let mut found = Vec::new();
        k.scan(&job, start, count, |n| found.push(n));
        found
    }

    #[test]
    fn every_kernel_finds_the_real_blocks() {
        let csv = include_str!("../../../../data/bitcoin-block-headers.csv");
        for line in csv.lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            let header = BlockHeader::from_hex(cols[1]).unwrap();
            let nonce: u32 = cols[3].parse().unwrap();
            let target = Target::from_compact(header.bits()).unwrap();
            for k in Kernel::available() {
                // A range that straddles the nonce at an odd offset, so lane tails are hit.
                let found = kernel_finds(k, &header, target, nonce - 1001, 2003);
                let real: Vec<u32> = found
                    .iter()
                    .copied()
                    .filter(|&n| target.is_met_by(&header.with_nonce(n).block_hash()))
                    .collect();
                assert_eq!(real, vec![nonce], "{k} on block {}", cols[0]);
                assert_eq!(header.with_nonce(nonce).block_hash().display_hex(), cols[2]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// On random headers with an easy target (top word 0x00ffffff: 1 in 256 passes),
        /// every kernel reports exactly what the sha2 crate says, in order.
        #[test]
        fn kernels_agree_with_sha2(bytes in proptest::collection::vec(any::<u8>(), 80),
                                   start in any::<u32>(), count in 0u32..700) {
            let header = BlockHeader(bytes.try_into().unwrap());
            let start = start.min(u32::MAX - count);
            let mut target = Target([u32::MAX; 8]);
            target.0[7] = 0x00ff_ffff;
            let want = reference(&header, target, start, count);
            for k in Kernel::available() {
                prop_assert_eq!(&kernel_finds(k, &header, target, start, count), &want, "{}", k);
            }
        }
    }

    #[test]
    fn calibration_picks_an_available_kernel_and_times_each() {
        let all = Kernel::available();
        let (k, times) = Kernel::calibrate(&all);
        assert!(all.contains(&k));
        let names: Vec<_> = times.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, all.iter().map(|k| k.name()).collect::<Vec<_>>());
        assert_eq!(Kernel::calibrate(&[Kernel::Portable]).0, Kernel::Portable);
        assert!(all.contains(&Kernel::best()));
    }

    #[test]
    fn the_top_of_the_nonce_space_is_scanned() {
        let header = BlockHeader([7u8; 80]);
        let mut target = Target::MAX;
        target.0[7] = 0x7fff_ffff;
        let start = u32::MAX - 300;
        let want = reference(&header, target, start, 301);
        assert!(want.iter().any(|&n| n > u32::MAX - 16));
        for k in Kernel::available() {
            assert_eq!(kernel_finds(k, &header, target, start, 301), want, "{k}");
        }
    }
}
