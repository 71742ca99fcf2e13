//! [`XorShift`]: the load generator's source of blob contents and sizes.
//!
//! Key decision: a xorshift64* generator, not the OS's random source: a
//! benchmark needs incompressible bytes fast (hundreds of MB before the
//! clock starts) and a reproducible sequence of sizes, not secrecy. Every
//! run is seeded from a fresh UUID unless a seed is given, so a server can
//! never answer a run from an earlier one's blobs.

/// A xorshift64* pseudo-random generator.
#[derive(Debug, Clone)]
pub struct XorShift {
    state: u64,
}

impl XorShift {
    /// A generator with a fixed seed (the same seed gives the same sequence).
    pub fn seeded(seed: u64) -> XorShift {
        // A zero state would stay zero; any odd value is a valid state.
        XorShift { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    /// A generator seeded from a fresh random UUID.
    pub fn fresh() -> XorShift {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        XorShift::seeded(a ^ b)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high` (`low` when `high <= low`).
    pub fn in_range(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        let span = (high - low) as u64 + 1;
        low + (self.next_u64() % span) as usize
    }

    /// `size` incompressible bytes.
    pub fn bytes(&mut self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size + 8);
        while out.len() < size {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(size);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_have_the_size_and_differ_per_generator() {
        let a = XorShift::fresh().bytes(1000);
        let b = XorShift::fresh().bytes(1000);
        assert_eq!(a.len(), 1000);
        assert_ne!(a, b);
        // Not trivially compressible: all byte values show up in 64 KiB.
        let big = XorShift::fresh().bytes(64 * 1024);
        let mut seen = [false; 256];
        big.iter().for_each(|&x| seen[x as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (XorShift::seeded(7), XorShift::seeded(7));
        assert_eq!(a.bytes(100), b.bytes(100));
        assert_ne!(XorShift::seeded(7).bytes(100), XorShift::seeded(8).bytes(100));
    }

    #[test]
    fn ranges_are_inclusive_and_bounded() {
        let mut r = XorShift::seeded(1);
        let values: Vec<usize> = (0..10_000).map(|_| r.in_range(3, 6)).collect();
        assert!(values.iter().all(|v| (3..=6).contains(v)));
        for v in 3..=6 {
            assert!(values.contains(&v), "{v} never drawn");
        }
        assert_eq!(r.in_range(5, 5), 5);
        assert_eq!(r.in_range(9, 2), 9);
    }
}
