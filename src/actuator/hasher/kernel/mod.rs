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

// Private: their `scan`s are `#[target_feature]` functions, callable only through
// `Kernel::scan`, which only a detected `Kernel` reaches.
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;
#[cfg(target_arch = "x86_64")]
mod shani;

/// A SHA-256d nonce-scanning implementation that this CPU runs.
///
/// The only ways to get one are [`Kernel::best`], [`Kernel::available`], [`Kernel::by_name`]
/// and [`Kernel::portable`], and each hands out a hand-written kernel only after the CPU
/// reported its features at run time: holding a `Kernel` is the proof that
/// [`Kernel::scan`] may execute its instructions. Safe code cannot name the
/// representation, so it cannot make an AVX-512 kernel on a CPU without AVX-512.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel(Imp);

/// The representation behind [`Kernel`]; never constructed outside detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    /// Hand-written x86_64 AVX-512 kernel: 16 nonces per zmm register, no SHA unit.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Hand-written x86_64 SHA-NI kernel interleaving several nonces.
    #[cfg(target_arch = "x86_64")]
    ShaNi,
    /// sha2's `compress256` with the same midstate scheme: works everywhere.
    Portable,
}

/// Every kernel gridminer has, on any CPU, by reported name, with what the CPU must
/// report to run it: one table for `name`, the lookup and its error.
const KERNELS: [(&str, &str); 3] = [
    ("avx512", "x86_64 with AVX-512F"),
    ("sha-ni", "x86_64 with SHA, SSSE3 and SSE4.1"),
    ("sha2-compress256", "nothing (it runs everywhere)"),
];

/// Why no kernel was handed out for a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A kernel gridminer has, which this CPU does not run.
    #[error("kernel {name:?} needs {needs}, which this CPU does not report; it runs: {}", .detected.join(", "))]
    NotDetected {
        name: String,
        needs: &'static str,
        detected: Vec<&'static str>,
    },
    /// No kernel has this name.
    #[error("no kernel is called {name:?} (kernels: {}); this CPU runs: {}", .known.join(", "), .detected.join(", "))]
    Unknown {
        name: String,
        known: Vec<&'static str>,
        detected: Vec<&'static str>,
    },
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

    /// sha2's `compress256` kernel: runs on every CPU (sha2 picks its own instructions at
    /// run time), so it needs no detection; the baseline the others are measured against.
    pub const fn portable() -> Kernel {
        Kernel(Imp::Portable)
    }

    /// Which of `kernels` hashes fastest here, by the best of a few alternating bursts of
    /// nonces each (other load can only slow a burst down); returns it with each one's best
    /// burst time. Ties go to the earlier kernel; an empty list gives the portable kernel.
    /// Which kernel wins depends on the CPU (AVX-512 on 256-bit units, or a fast SHA unit,
    /// can turn the order round), so it is measured rather than assumed.
    pub fn calibrate(kernels: &[Kernel]) -> (Kernel, Vec<(&'static str, Duration)>) {
        const ROUNDS: u32 = 3;
        const NONCES: u32 = 1 << 14;
        let job = BlockHeader([0; 80]).prepare(Target([0; 8]));
        let mut best = vec![Duration::MAX; kernels.len()];
        if kernels.len() > 1 {
            for r in 0..ROUNDS {
                for (k, best) in kernels.iter().zip(best.iter_mut()) {
                    let t0 = Instant::now();
                    k.scan(&job, r * NONCES, NONCES, |n| {
                        std::hint::black_box(n);
                    });
                    *best = (*best).min(t0.elapsed());
                }
            }
        }
        let fastest = kernels
            .iter()
            .zip(&best)
            .min_by_key(|(_, t)| **t)
            .map_or(Kernel::portable(), |(k, _)| *k);
        let times = kernels.iter().map(|k| k.name()).zip(best).collect();
        (fastest, times)
    }

    /// Every kernel this CPU runs, found by asking the CPU at run time, in the order
    /// measured by `hash bench` on an Ice Lake server (AVX-512, SHA-NI, sha2): the default
    /// when calibration cannot tell.
    pub fn available() -> Vec<Kernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        if avx512::supported() {
            v.push(Kernel(Imp::Avx512));
        }
        #[cfg(target_arch = "x86_64")]
        if shani::supported() {
            v.push(Kernel(Imp::ShaNi));
        }
        v.push(Kernel::portable());
        v
    }

    /// The kernel reported as `name`, if this CPU runs it; otherwise an error that says
    /// whether the name is unknown or the CPU lacks what the kernel needs.
    pub fn by_name(name: &str) -> Result<Kernel, KernelError> {
        let detected = Kernel::available();
        if let Some(k) = detected.iter().find(|k| k.name() == name) {
            return Ok(*k);
        }
        let detected = detected.iter().map(|k| k.name()).collect();
        match KERNELS.iter().find(|(n, _)| *n == name) {
            Some(&(_, needs)) => Err(KernelError::NotDetected {
                name: name.to_owned(),
                needs,
                detected,
            }),
            None => Err(KernelError::Unknown {
                name: name.to_owned(),
                known: KERNELS.iter().map(|(n, _)| *n).collect(),
                detected,
            }),
        }
    }

    /// The name reports, `--kernel` and the metrics use.
    pub fn name(self) -> &'static str {
        let row = match self.0 {
            #[cfg(target_arch = "x86_64")]
            Imp::Avx512 => 0,
            #[cfg(target_arch = "x86_64")]
            Imp::ShaNi => 1,
            Imp::Portable => 2,
        };
        KERNELS[row].0
    }

    /// Hashes nonces `start .. start + count` (the caller keeps `start + count <= 2^32`)
    /// and calls `on_candidate(nonce)` for each whose hash's top 32 bits are within the
    /// target's top word. The caller confirms candidates against the full target.
    #[inline]
    pub fn scan<F: FnMut(u32)>(self, job: &ScanJob, start: u32, count: u32, on_candidate: F) {
        debug_assert!(start as u64 + count as u64 <= 1 << 32);
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `avx512::scan` needs AVX-512F. `Imp::Avx512` is private and built in
            // one place only, `Kernel::available`, right after `avx512::supported()` saw
            // AVX-512F reported by this CPU (run-time CPUID, not a build flag).
            Imp::Avx512 => unsafe { avx512::scan(job, start, count, on_candidate) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `shani::scan` needs SHA, SSE2, SSSE3 and SSE4.1. `Imp::ShaNi` is
            // private and built in one place only, `Kernel::available`, right after
            // `shani::supported()` saw all four reported by this CPU at run time.
            Imp::ShaNi => unsafe { shani::scan(job, start, count, on_candidate) },
            Imp::Portable => portable::scan(job, start, count, on_candidate),
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

    /// Every kernel safe code can obtain here: the detected list, each name the lookup
    /// accepts, and the calibrated best (each must be one of the detected).
    fn obtainable() -> Vec<Kernel> {
        let by_name = KERNELS
            .iter()
            .filter_map(|(name, _)| Kernel::by_name(name).ok());
        let mut all = Vec::new();
        for k in Kernel::available()
            .into_iter()
            .chain(by_name)
            .chain([Kernel::best(), Kernel::portable()])
        {
            if !all.contains(&k) {
                all.push(k);
            }
        }
        assert_eq!(
            all,
            Kernel::available(),
            "a kernel obtainable but not detected"
        );
        all
    }

    /// r10 (issue 10, soundness): on the real block headers in data/, every kernel safe code
    /// can obtain on this machine reports exactly the portable kernel's candidates, with
    /// the block's own target and with an easy one (top word 0x00ffffff: about 8 of the
    /// 2003 nonces pass, so lanes other than the winning nonce's are compared too), and
    /// the candidates that meet the full target are the real nonce alone.
    #[test]
    fn every_kernel_finds_the_real_blocks() {
        let csv = include_str!("../../../../data/bitcoin-block-headers.csv");
        let mut easy = Target([u32::MAX; 8]);
        easy.0[7] = 0x00ff_ffff;
        for line in csv.lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            let header = BlockHeader::from_hex(cols[1]).unwrap();
            let nonce: u32 = cols[3].parse().unwrap();
            let target = Target::from_compact(header.bits()).unwrap();
            assert_eq!(header.with_nonce(nonce).block_hash().display_hex(), cols[2]);
            // A range that straddles the nonce at an odd offset, so lane tails are hit.
            let (start, count) = (nonce - 1001, 2003);
            let portable = Kernel::portable();
            let want_real = kernel_finds(portable, &header, target, start, count);
            let want_easy = kernel_finds(portable, &header, easy, start, count);
            assert_eq!(want_easy, reference(&header, easy, start, count));
            assert!(
                want_easy.len() > 1,
                "block {}: too few easy candidates",
                cols[0]
            );
            for k in obtainable() {
                let found = kernel_finds(k, &header, target, start, count);
                assert_eq!(found, want_real, "{k} vs portable on block {}", cols[0]);
                let easy_found = kernel_finds(k, &header, easy, start, count);
                assert_eq!(
                    easy_found, want_easy,
                    "{k} vs portable on block {}",
                    cols[0]
                );
                let real: Vec<u32> = found
                    .iter()
                    .copied()
                    .filter(|&n| target.is_met_by(&header.with_nonce(n).block_hash()))
                    .collect();
                assert_eq!(real, vec![nonce], "{k} on block {}", cols[0]);
            }
        }
    }

    /// r10 (issue 10, soundness): the lookup by name hands out a kernel exactly when the
    /// CPU reported it, and otherwise says which of the two failures it is. Catches a
    /// lookup that builds a kernel from its name alone (an AVX-512 kernel on a CPU
    /// without AVX-512 would fault on its first instruction).
    #[test]
    fn r10_by_name_hands_out_only_detected_kernels() {
        let detected: Vec<&str> = Kernel::available().iter().map(|k| k.name()).collect();
        for (name, needs) in KERNELS {
            match Kernel::by_name(name) {
                Ok(k) => {
                    assert_eq!(k.name(), name);
                    assert!(detected.contains(&name), "{name} handed out undetected");
                }
                Err(e) => {
                    assert!(!detected.contains(&name), "{name} detected but refused");
                    assert_eq!(
                        e,
                        KernelError::NotDetected {
                            name: name.to_owned(),
                            needs,
                            detected: detected.clone(),
                        }
                    );
                }
            }
        }
        let err = Kernel::by_name("avx1024").unwrap_err();
        assert!(matches!(&err, KernelError::Unknown { name, .. } if name == "avx1024"));
        let shown = err.to_string();
        for name in KERNELS.map(|(n, _)| n) {
            assert!(shown.contains(name), "{shown:?} does not list {name}");
        }
        assert!(detected.contains(&"sha2-compress256"));
        assert_eq!(Kernel::by_name("sha2-compress256"), Ok(Kernel::portable()));
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
        assert_eq!(
            Kernel::calibrate(&[Kernel::portable()]).0,
            Kernel::portable()
        );
        assert_eq!(Kernel::calibrate(&[]).0, Kernel::portable());
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
